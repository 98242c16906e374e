"""The services layer on real provider contracts (faked at the HTTP layer): creation with tools
and its undo, teardown order and retry, the pool's cycle on Railway, call budgets."""
from __future__ import annotations

import math
import re
import uuid

import pytest
import responses

from pool_app.models import Instance
from pool_app.models import InstanceStatus as S
from pool_app.services import pool_tick
from services_app import facade
from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.services import ServicesError
from tests.conftest import ALL_DATABASES
from tests.services_app.fake_railway import FakeRailway
from tests.services_app.conftest import services_on_railway

OPENROUTER = "https://openrouter.test/api/v1"
AGENTMAIL = "https://agentmail.test/v0"
MGMT_KEY = "sk-or-v1-fake_management_key_0123456789"
HEALTH = re.compile(r"https://.*\.up\.railway\.app/pool/health")


@pytest.fixture
def railway(settings, rsps, monkeypatch) -> FakeRailway:
    api = services_on_railway(settings)
    settings.OPENROUTER_API_URL = OPENROUTER
    settings.OPENROUTER_MANAGEMENT_KEY = MGMT_KEY
    settings.AGENTMAIL_API_URL = AGENTMAIL
    settings.AGENTMAIL_API_KEY = "am-pool-account-key-0123456789"
    monkeypatch.setattr("services_app.plugins.http.sleep", lambda s: None, raising=False)
    rsps.add(responses.GET, HEALTH, json={"ready": True, "version": "t", "runtime": "openclaw"})
    _openrouter(rsps)
    return FakeRailway(api, tokens=["tok-a"], workspace_id="ws-1").install(rsps)


def _openrouter(rsps) -> None:
    def create(request):
        n = uuid.uuid4().hex[:12]
        return 201, {}, f'{{"key": "sk-or-v1-fake_instance_{n}_0123456789", "data": {{"hash": "hash-{n}", "name": "x", "limit": 20}}}}'

    rsps.add_callback(responses.POST, f"{OPENROUTER}/keys", callback=create, content_type="application/json")
    rsps.add(responses.DELETE, re.compile(rf"{re.escape(OPENROUTER)}/keys/hash-\w+"), json={"deleted": True})


def _deleted_keys(rsps) -> list[str]:
    return [c.request.url.rsplit("/", 1)[1] for c in rsps.calls if c.request.method == "DELETE" and "/keys/" in c.request.url]


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_a_creation_failing_at_the_volume_step_leaves_nothing_behind(railway, rsps):
    railway.fail("volumeCreate")
    with pytest.raises(ServicesError) as failed:
        facade.create_instance("vol0fail0001")
    assert "volumeCreate" in failed.value.message or "Could not create" in failed.value.message
    assert railway.calls["projectCreate"] == 1 and railway.calls["projectDelete"] == 1
    assert railway.projects == {}  # no project
    created = [c for c in rsps.calls if c.request.method == "POST" and c.request.url.endswith("/keys")]
    assert len(created) == 1 and len(_deleted_keys(rsps)) == 1  # the OpenRouter key made for it is gone
    assert InstanceInfra.objects.count() == 0 and InstanceService.objects.count() == 0  # no row


@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_a_teardown_past_a_failing_agentmail_finishes_at_the_next_tick(railway, rsps, settings):
    settings.POOL_MIN_IDLE = 0
    facade.create_instance("tear0down001")
    infra = InstanceInfra.objects.get(instance_id="tear0down001")
    InstanceService.objects.create(instance=infra, tool_id="email", resource_id="inbox-1@agentmail.to")
    Instance.objects.create(id="tear0down001", status=S.DEAD, url=infra.url)
    railway.set_status(infra.railway_project_id, "CRASHED")
    keys_path = f"{AGENTMAIL}/inboxes/inbox-1@agentmail.to/api-keys"
    rsps.add(responses.GET, keys_path, status=500, json={"message": "down"})

    pool_tick()  # the dead instance is destroyed: AgentMail fails, the rest goes on
    assert Instance.objects.get(pk="tear0down001").status == S.DELETED
    assert railway.projects == {}  # the project is deleted anyway
    assert len(_deleted_keys(rsps)) == 1  # and the OpenRouter key (first in the seed's order)
    email = InstanceService.objects.get(tool_id="email")
    assert email.status == ResourceStatus.DESTROY_FAILED and "500" in email.last_error
    assert InstanceInfra.objects.get().torn_down_at is not None  # not forgotten while the inbox remains
    assert facade.status_batch(["tear0down001"])["tear0down001"]["status"] == "not_found"

    rsps.replace(responses.GET, keys_path, json={"api_keys": []})
    rsps.add(responses.DELETE, f"{AGENTMAIL}/inboxes/inbox-1@agentmail.to", status=204)
    report = pool_tick()
    assert report["steps"]["retry_teardowns"] == {"pending": 1, "finished": 1}
    assert InstanceInfra.objects.count() == 0 and InstanceService.objects.count() == 0


@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_the_pool_runs_a_full_cycle_on_railway(railway, rsps, settings, api):
    settings.POOL_MIN_IDLE = 2
    provision = re.compile(r"https://.*\.up\.railway\.app/pool/provision")
    rsps.add(responses.POST, provision, json={"ok": True, "inviteUrl": "https://dev.convos.org/v2?i=rw", "conversationId": "c" * 32,
                                              "joined": False, "status": "created"})
    assert pool_tick()["steps"]["top_up"]["created"] == 2
    creation_calls = sum(railway.calls.values())
    assert creation_calls // 2 <= 8  # Railway calls per created instance
    railway.calls.clear()
    pool_tick()
    assert Instance.objects.filter(status=S.IDLE).count() == 2
    assert railway.calls["projects"] == 1  # one status call per tick

    claim = api.post("/api/pool/claim", {"agentName": "Railway agent", "instructions": "Hi"}, format="json")
    assert claim.status_code == 200, claim.content
    provision_call = next(c for c in rsps.calls if provision.match(c.request.url))
    assert provision_call.request.headers["Authorization"].startswith("Bearer ")

    instance_id = claim.json()["instanceId"]
    project_id = InstanceInfra.objects.get(instance_id=instance_id).railway_project_id
    assert api.delete(f"/api/pool/instances/{instance_id}").status_code == 200
    assert project_id not in railway.projects
    assert Instance.objects.get(pk=instance_id).status == S.DELETED


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_a_tick_over_500_railway_instances_makes_one_status_call_per_page(railway, settings):
    settings.POOL_MIN_IDLE = 0
    settings.RAILWAY_PROJECTS_PAGE_SIZE = 50
    settings.ORPHAN_SWEEP_MS = 0  # its own listing, every ORPHAN_SWEEP_MS, is not the status budget measured here
    infras, rows = [], []
    for n in range(500):
        project = railway.seed_project(status="SUCCESS")
        instance_id = f"bulk{n:08d}"
        service = next(iter(project["services"].values()))
        infras.append(InstanceInfra(instance_id=instance_id, provider="railway", railway_project_id=project["id"],
                                    railway_service_id=service["id"], url=f"https://{instance_id}.up.railway.app",
                                    secret_nonce="n", instance_services_token_hash=uuid.uuid4().hex))
        rows.append(Instance(id=instance_id, status=S.IDLE, deploy_status="healthy", url=infras[-1].url))
    InstanceInfra.objects.bulk_create(infras)
    Instance.objects.bulk_create(rows)
    railway.calls.clear()

    report = pool_tick()
    assert report["outage"] == "" and report["steps"]["observe"]["checked"] == 500
    assert railway.calls["projects"] <= math.ceil(500 / 50)
    assert sum(railway.calls.values()) == railway.calls["projects"]  # nothing else was called
    assert Instance.objects.filter(status=S.IDLE).count() == 500
