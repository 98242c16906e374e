"""The orphan sweep (services_app/services/orphans.py) and the reverse direction: rows whose
provider resource is gone are closed as done. Railway is the stand-in of fake_railway.py; the tool
providers are faked with `responses`."""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path

import pytest
import responses
from prometheus_client import generate_latest

from convos.metrics import registry
from services_app import facade
from services_app.db import DB
from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.plugins.agentmail import plugin as agentmail
from services_app.plugins.telnyx import plugin as telnyx
from services_app.providers.fake import FakeProvider, fake_instance
from services_app.providers.local import ENV_FILE
from services_app.services import ServicesError, orphans_sweep
from services_app.services.teardown import destroy_resource
from tests.conftest import ALL_DATABASES
from tests.services_app.conftest import services_on_railway
from tests.services_app.fake_railway import FakeRailway

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

HOUR = 3600
OPENROUTER = "https://openrouter.test/api/v1"
AGENTMAIL = "https://agentmail.test/v0"
TELNYX = "https://telnyx.test/v2"
HEALTH = re.compile(r"https://.*\.up\.railway\.app/pool/health")


@pytest.fixture(autouse=True)
def _tools_off(settings):
    """No tool account configured unless a test says so: each test sweeps only what it set up."""
    settings.OPENROUTER_MANAGEMENT_KEY = ""
    settings.AGENTMAIL_API_KEY = ""
    settings.TELNYX_API_KEY = ""
    settings.BANKR_API_KEY = ""
    settings.ORPHAN_GRACE_MS = 900_000
    settings.ORPHAN_SWEEP_DELETE = False


@pytest.fixture
def railway(settings, rsps) -> FakeRailway:
    api = services_on_railway(settings)
    rsps.add(responses.GET, HEALTH, json={"ready": True, "version": "t", "runtime": "openclaw"})
    return FakeRailway(api, tokens=["tok-a"], workspace_id="ws-1").install(rsps)


def _iid() -> str:
    return secrets.token_hex(6)


def _orphan_project(railway: FakeRailway, *, age_s: float = HOUR, name: str | None = None) -> dict:
    project = railway.seed_project(name=name or f"convos-agent-{_iid()}")
    railway.age(project["id"], age_s)
    return project


def _infra_row(instance_id: str, **fields) -> InstanceInfra:
    return InstanceInfra.objects.using(DB).create(instance_id=instance_id, provider=fields.pop("provider", "railway"),
                                                  secret_nonce="-", instance_services_token_hash="-", **fields)


def _found(result: dict, provider: str) -> set[str]:
    return {o["name"] for o in result["providers"][provider]["orphans"]}


# --- Railway -----------------------------------------------------------------------------------------
def test_it_reports_an_old_unrecorded_project_and_leaves_it_by_default(railway):
    orphan = _orphan_project(railway)
    result = orphans_sweep()
    assert _found(result, "railway") == {orphan["name"]}
    assert result["providers"]["railway"]["orphans"][0]["resourceId"] == orphan["id"]
    assert result["delete"] is False and result["providers"]["railway"]["deleted"] == 0
    assert orphan["id"] in railway.projects and railway.calls["projectDelete"] == 0
    # The listing asked for createdAt, in the one light document.
    assert railway.calls["projects"] >= 1


def test_it_deletes_orphans_when_orphan_sweep_delete_is_on(railway, settings):
    settings.ORPHAN_SWEEP_DELETE = True
    orphan = _orphan_project(railway)
    result = orphans_sweep()
    assert result["delete"] is True and result["providers"]["railway"]["deleted"] == 1
    assert orphan["id"] not in railway.projects
    assert [v for f, v, _ in railway.log if f == "projectDelete"] == [{"id": orphan["id"]}]


def test_it_deletes_nothing_when_the_caller_does_not_allow_it(railway, settings):
    settings.ORPHAN_SWEEP_DELETE = True
    orphan = _orphan_project(railway)
    result = orphans_sweep(delete_allowed=False)  # the pool is paused
    assert _found(result, "railway") == {orphan["name"]} and result["delete"] is False
    assert orphan["id"] in railway.projects


def test_it_leaves_a_project_younger_than_the_grace_period(railway, settings):
    settings.ORPHAN_SWEEP_DELETE = True
    young = _orphan_project(railway, age_s=60)  # being created: its row is not written yet
    result = orphans_sweep()
    assert result["providers"]["railway"]["listed"] == 1 and _found(result, "railway") == set()
    assert young["id"] in railway.projects and railway.calls["projectDelete"] == 0


def test_it_never_touches_a_project_not_named_by_the_pool(railway, settings):
    settings.ORPHAN_SWEEP_DELETE = True
    others = [_orphan_project(railway, age_s=30 * 24 * HOUR, name=name)
              for name in ("billing-api", "convos-agent-", "my-convos-agent-abc", "convos-agent-a.b", "convos-agents-abc", "Convos-Agent-abc")]
    result = orphans_sweep()
    assert result["providers"]["railway"] == {"listed": 0, "orphans": [], "deleted": 0, "deleteErrors": {}}
    assert all(p["id"] in railway.projects for p in others) and railway.calls["projectDelete"] == 0


def test_it_never_reports_a_project_that_a_row_records(railway, settings):
    settings.ORPHAN_SWEEP_DELETE = True
    by_id = _orphan_project(railway)
    _infra_row(_iid(), railway_project_id=by_id["id"])
    by_name = _orphan_project(railway)
    _infra_row(by_name["name"].removeprefix("convos-agent-"))  # recorded, its project id not yet written
    torn_down = _orphan_project(railway)
    _infra_row(_iid(), railway_project_id=torn_down["id"], torn_down_at="2026-01-01T00:00:00Z")
    result = orphans_sweep()
    assert result["providers"]["railway"]["listed"] == 3 and _found(result, "railway") == set()
    assert len(railway.projects) == 3 and railway.calls["projectDelete"] == 0


def test_it_records_a_failing_listing_and_still_sweeps_the_other_providers(railway, settings, rsps):
    settings.OPENROUTER_MANAGEMENT_KEY = secrets.token_hex(16)
    settings.OPENROUTER_API_URL = OPENROUTER
    _orphan_project(railway)
    railway.fail("projects", times=10, message="Problem processing request (fake)")
    key = {"hash": secrets.token_hex(16), "name": f"convos-{_iid()}", "created_at": "2026-01-01T00:00:00Z"}
    rsps.add(responses.GET, f"{OPENROUTER}/keys", json={"data": [key, {"hash": secrets.token_hex(16), "name": "someone-else"}]},
             match=[responses.matchers.query_param_matcher({"offset": "0", "include_disabled": "true"})])
    rsps.add(responses.GET, f"{OPENROUTER}/keys", json={"data": []},
             match=[responses.matchers.query_param_matcher({"offset": "2", "include_disabled": "true"})])
    result = orphans_sweep()
    assert "railway" in result["errors"] and "railway" not in result["providers"]
    assert _found(result, "openrouter") == {key["name"]}
    assert result["providers"]["openrouter"]["orphans"][0]["resourceId"] == key["hash"]


def test_it_reports_no_tool_resource_that_a_live_row_records(railway, settings, rsps):
    settings.OPENROUTER_MANAGEMENT_KEY = secrets.token_hex(16)
    settings.OPENROUTER_API_URL = OPENROUTER
    recorded, destroyed = (secrets.token_hex(16) for _ in range(2))
    infra = _infra_row(_iid())
    InstanceService.objects.using(DB).create(instance=infra, tool_id="openrouter", resource_id=recorded)
    InstanceService.objects.using(DB).create(instance=infra, tool_id="openrouter", resource_id=destroyed, status=ResourceStatus.DESTROYED)
    old = "2026-01-01T00:00:00Z"
    keys = [{"hash": h, "name": f"convos-{infra.instance_id}", "created_at": old} for h in (recorded, destroyed)]
    rsps.add(responses.GET, f"{OPENROUTER}/keys", json={"data": keys},
             match=[responses.matchers.query_param_matcher({"offset": "0", "include_disabled": "true"})])
    rsps.add(responses.GET, f"{OPENROUTER}/keys", json={"data": []},
             match=[responses.matchers.query_param_matcher({"offset": "2", "include_disabled": "true"})])
    result = orphans_sweep()
    # A destroyed row no longer holds its key: still listed, it is an orphan again.
    assert [o["resourceId"] for o in result["providers"]["openrouter"]["orphans"]] == [destroyed]


def test_it_sets_the_orphans_gauge_per_provider(railway):
    _orphan_project(railway)
    _orphan_project(railway)
    orphans_sweep()
    exported = generate_latest(registry()).decode()
    assert 'convos_pool_orphans{provider="railway"} 2.0' in exported


# --- fake and local providers ------------------------------------------------------------------------
def test_it_finds_an_orphan_of_the_fake_provider(settings):
    settings.INFRA_PROVIDER = "fake"
    settings.FAKE_FLEET_URL = ""
    old, young = _iid(), _iid()
    FakeProvider().create(instance_id=old, variables={})
    FakeProvider().create(instance_id=young, variables={})
    fake_instance(old).created_at -= timedelta(hours=1)
    result = orphans_sweep()
    assert old in _found(result, "fake") and young not in _found(result, "fake")
    settings.ORPHAN_SWEEP_DELETE = True
    orphans_sweep()
    assert fake_instance(old) is None and fake_instance(young) is not None
    FakeProvider().destroy_unrecorded(young)


def test_it_finds_a_local_data_dir_that_no_row_records(settings, tmp_path: Path):
    settings.INFRA_PROVIDER = "local"
    settings.LOCAL_INSTANCES_DIR = tmp_path
    old_time = time.time() - 2 * HOUR

    def home(instance_id: str, *, age: bool = True) -> Path:
        path = tmp_path / instance_id
        (path / "data").mkdir(parents=True)
        (path / ENV_FILE).write_text(json.dumps({"INSTANCE_ID": instance_id}))
        if age:
            os.utime(path, (old_time, old_time))
        return path

    orphan, recorded, young = home(_iid()), home(_iid()), home(_iid(), age=False)
    _infra_row(recorded.name, provider="local", provider_state={"home": str(recorded)})
    unrelated = tmp_path / "notes"  # not laid out by the provider: never the pool's
    unrelated.mkdir()
    os.utime(unrelated, (old_time, old_time))
    result = orphans_sweep()
    assert _found(result, "local") == {orphan.name}
    settings.ORPHAN_SWEEP_DELETE = True
    assert orphans_sweep()["providers"]["local"]["deleted"] == 1
    assert not orphan.exists() and recorded.exists() and young.exists() and unrelated.exists()


# --- tool plugins' listings --------------------------------------------------------------------------
def test_it_lists_only_the_agentmail_inboxes_the_pool_named(settings, mocked):
    settings.AGENTMAIL_API_URL = AGENTMAIL
    settings.AGENTMAIL_API_KEY = secrets.token_hex(16)
    settings.AGENTMAIL_DOMAIN = ""
    mine, paged = _iid(), _iid()
    first = {"inboxes": [
        {"inbox_id": f"convos-{mine}@agentmail.to", "email": f"convos-{mine}@agentmail.to", "client_id": f"convos-{mine}",
         "created_at": "2026-01-01T00:00:00Z"},
        {"inbox_id": "support@agentmail.to", "email": "support@agentmail.to", "created_at": "2026-01-01T00:00:00Z"},
        {"inbox_id": f"convos-{_iid()}@agentmail.to", "client_id": "someone-else", "created_at": "2026-01-01T00:00:00Z"},
    ], "next_page_token": "p2"}
    second = {"inboxes": [{"inbox_id": f"convos-{paged}@agentmail.to", "created_at": "2026-01-02T00:00:00Z"}]}
    mocked.add(responses.GET, f"{AGENTMAIL}/inboxes", json=first, match=[responses.matchers.query_param_matcher({"limit": "100"})])
    mocked.add(responses.GET, f"{AGENTMAIL}/inboxes", json=second,
               match=[responses.matchers.query_param_matcher({"limit": "100", "page_token": "p2"})])
    owned = agentmail.list_owned()
    assert [(o.instance_id, o.resource_id) for o in owned] == [(mine, f"convos-{mine}@agentmail.to"), (paged, f"convos-{paged}@agentmail.to")]
    assert all(c.request.headers["Authorization"] == f"Bearer {settings.AGENTMAIL_API_KEY}" for c in mocked.calls)


def test_it_lists_only_the_telnyx_numbers_the_pool_referenced(settings, mocked):
    settings.TELNYX_API_URL = TELNYX
    settings.TELNYX_API_KEY = secrets.token_hex(16)
    mine = _iid()
    page = {"data": [
        {"id": "1", "phone_number": "+15550000001", "customer_reference": f"convos-{mine}", "purchased_at": "2026-01-01T00:00:00Z"},
        {"id": "2", "phone_number": "+15550000002", "customer_reference": "support-line"},
        {"id": "3", "phone_number": "+15550000003"},
    ], "meta": {"total_pages": 2, "page_number": 1}}
    mocked.add(responses.GET, f"{TELNYX}/phone_numbers", json=page,
               match=[responses.matchers.query_param_matcher({"page[number]": "1", "page[size]": "250"})])
    mocked.add(responses.GET, f"{TELNYX}/phone_numbers", json={"data": [], "meta": {"total_pages": 2}},
               match=[responses.matchers.query_param_matcher({"page[number]": "2", "page[size]": "250"})])
    owned = telnyx.list_owned()
    assert [(o.instance_id, o.resource_id) for o in owned] == [(mine, "+15550000001")]
    assert owned[0].created_at is not None


# --- the reverse: rows whose provider resource is gone -----------------------------------------------
def test_it_reports_removed_for_a_project_deleted_behind_the_pools_back(railway):
    kept, gone = railway.seed_project(), railway.seed_project()
    for project in (kept, gone):
        service_id = next(iter(project["services"]))
        _infra_row(project["name"].removeprefix("convos-agent-"), railway_project_id=project["id"], railway_service_id=service_id,
                   railway_environment_id=project["services"][service_id]["environmentId"])
    del railway.projects[gone["id"]]
    seen = facade.status_batch([p["name"].removeprefix("convos-agent-") for p in (kept, gone)])
    assert seen[gone["name"].removeprefix("convos-agent-")]["deployStatus"] == "REMOVED"
    assert seen[kept["name"].removeprefix("convos-agent-")]["deployStatus"] == "SUCCESS"


def test_it_counts_not_authorized_on_an_already_deleted_project_as_destroyed(railway):
    railway.missing_project_message = "Not Authorized"  # what Railway answers for a deleted project id
    railway.seed_project()  # the workspace is not empty: the listing is real
    instance_id = _iid()
    _infra_row(instance_id, railway_project_id="0b7c8a2e-gone-gone-gone-000000000000")
    assert facade.destroy(instance_id) == {"ok": True, "pendingResources": 0}
    assert not InstanceInfra.objects.using(DB).filter(instance_id=instance_id).exists()


def test_it_keeps_not_authorized_an_error_while_the_project_is_still_listed(railway):
    project = railway.seed_project()
    instance_id = _iid()
    _infra_row(instance_id, railway_project_id=project["id"])
    railway.fail("projectDelete", message="Not Authorized")  # a token that lacks access, say
    with pytest.raises(ServicesError):
        facade.destroy(instance_id)
    assert project["id"] in railway.projects
    assert InstanceInfra.objects.using(DB).filter(instance_id=instance_id).exists()


def test_it_closes_a_tool_row_whose_resource_is_already_gone_as_destroyed(settings, rsps):
    settings.OPENROUTER_MANAGEMENT_KEY = secrets.token_hex(16)
    settings.OPENROUTER_API_URL = OPENROUTER
    key_hash = secrets.token_hex(16)
    rsps.add(responses.DELETE, f"{OPENROUTER}/keys/{key_hash}", status=404, json={"error": {"message": "not found"}})
    row = InstanceService.objects.using(DB).create(instance=_infra_row(_iid()), tool_id="openrouter", resource_id=key_hash,
                                                   status=ResourceStatus.DESTROY_FAILED)
    assert destroy_resource(row) is True
    row.refresh_from_db(using=DB)
    assert row.status == ResourceStatus.DESTROYED and row.destroyed_at is not None and row.last_error == ""


def test_it_shows_the_last_sweeps_orphans_on_the_services_admin(railway, admin_client):
    orphan = _orphan_project(railway)
    orphans_sweep()
    page = admin_client.get("/admin/services_app/providerstatus/").content.decode()
    assert "Orphans (last sweep)" in page and orphan["name"] in page and orphan["id"] in page


def test_it_takes_a_timestamp_without_a_zone_as_utc(settings, rsps):
    settings.OPENROUTER_MANAGEMENT_KEY = secrets.token_hex(16)
    settings.OPENROUTER_API_URL = OPENROUTER
    settings.INFRA_PROVIDER = "fake"
    key = {"hash": secrets.token_hex(16), "name": f"convos-{_iid()}", "created_at": "2026-01-01 00:00:00"}
    rsps.add(responses.GET, f"{OPENROUTER}/keys", json={"data": [key]},
             match=[responses.matchers.query_param_matcher({"offset": "0", "include_disabled": "true"})])
    rsps.add(responses.GET, f"{OPENROUTER}/keys", json={"data": [key]},  # an API that ignores `offset`
             match=[responses.matchers.query_param_matcher({"offset": "1", "include_disabled": "true"})])
    result = orphans_sweep()
    assert result["errors"] == {} and _found(result, "openrouter") == {key["name"]}
