"""Template-aware claims end to end: the real services layer and plugins on the fake infra
provider, providers faked at the HTTP layer; API clients that own what they create."""
from __future__ import annotations

import io
import logging
import re

import pytest
import responses
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from convos.log_redaction import RedactSecretsFilter
from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import pool_tick
from pool_app.services.api_clients import api_client_create
from pool_app.services.templates import template_sync
from services_app.models import InstanceService, ResourceStatus
from services_app.providers import fake as fake_provider
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES, wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
AGENTMAIL = "https://agentmail.test/v0"
TELNYX_KEY = "KEYuser-telnyx-secret-0123456789abcdef"
USER_CONFIG = {"telnyxApiKey": TELNYX_KEY, "telnyxPhoneNumber": "+15551234567"}


@pytest.fixture
def pool(settings, pool_work_inline):
    """Three idle instances on the fake infra provider (real services layer, real HTTP health)."""
    settings.INFRA_PROVIDER = "fake"
    settings.POOL_MIN_IDLE = 3
    settings.OPENROUTER_MANAGEMENT_KEY = ""
    settings.AGENTMAIL_API_URL = AGENTMAIL
    settings.AGENTMAIL_API_KEY = "am-pool-account-key-0123456789"
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() == 3, timeout=20, interval=0.1, message="3 idle")
    settings.POOL_MIN_IDLE = 0
    return list(Instance.objects.filter(status=S.IDLE))


@pytest.fixture
def agentmail():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+/"))  # the fake instances
        rsps.add(responses.POST, f"{AGENTMAIL}/inboxes", json={"inbox_id": "agent@mail.test", "email": "agent@mail.test"})
        rsps.add(responses.POST, f"{AGENTMAIL}/inboxes/agent@mail.test/api-keys", json={"api_key": "am-scoped-key-0123456789abc", "api_key_id": "k1"})
        rsps.add(responses.GET, f"{AGENTMAIL}/inboxes/agent@mail.test/api-keys", json={"api_keys": [{"api_key_id": "k1"}]})
        rsps.add(responses.DELETE, f"{AGENTMAIL}/inboxes/agent@mail.test/api-keys/k1", status=204)
        rsps.add(responses.DELETE, f"{AGENTMAIL}/inboxes/agent@mail.test", status=204)
        yield rsps


def _client(owner: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name=owner, owner_id=owner).key}")
    return client


def _template(creator: str, *, tools=None, allow_override=False, visibility="private") -> AgentTemplate:
    return AgentTemplate.objects.create(
        creator_id=creator, agent_name="Concierge", instructions="Book things.", visibility=visibility,
        model={"default": "openrouter/model-a", "allow_override": allow_override},
        tools=tools if tools is not None else [{"id": "email", "provisioning": "pool"}, {"id": "sms", "provisioning": "user"}],
    )


def _calls(rsps, method: str, suffix: str) -> int:
    return sum(1 for c in rsps.calls if c.request.method == method and c.request.url.endswith(suffix))


def test_it_a_template_claim_provisions_exactly_its_tools_and_passes_the_users_credentials(pool, agentmail):
    alice = _client("alice")
    template = _template("alice")
    response = alice.post("/api/pool/claim", {"templateId": template.pk, "userConfig": USER_CONFIG}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["inviteUrl"].startswith("https://dev.convos.org/v2?i=") and body["agentName"] == "Concierge"

    instance = Instance.objects.get(pk=body["instanceId"])
    assert (instance.template_id, instance.owner_id, instance.model) == (template.pk, "alice", "openrouter/model-a")
    assert instance.template_synced_at is not None
    tools = {r.tool_id: r for r in InstanceService.objects.filter(instance_id=instance.pk).exclude(tool_id="wallet")}
    assert set(tools) == {"email", "sms"}  # exactly the template's tools
    assert tools["email"].status == ResourceStatus.ACTIVE and tools["sms"].status == ResourceStatus.USER_PROVIDED
    assert _calls(agentmail, "POST", "/inboxes") == 1
    held = fake_provider._instances[instance.pk].credentials
    assert held["TELNYX_API_KEY"] == TELNYX_KEY and held["TELNYX_PHONE_NUMBER"] == "+15551234567"
    assert held["AGENTMAIL_INBOX_ID"] == "agent@mail.test"
    assert TELNYX_KEY not in str([r.config for r in InstanceService.objects.all()])  # never stored


def test_it_missing_user_credentials_get_400_before_any_instance_leaves_idle(pool, agentmail):
    alice = _client("alice")
    template = _template("alice")
    for user_config in (None, {}, {"telnyxApiKey": TELNYX_KEY}, {"telnyxApiKey": TELNYX_KEY, "telnyxPhoneNumber": "555"}):
        body = {"templateId": template.pk} | ({"userConfig": user_config} if user_config is not None else {})
        response = alice.post("/api/pool/claim", body, format="json")
        assert response.status_code == 400, response.content
        assert "userConfig" in response.json()["error"]
    assert "telnyxPhoneNumber" in response.json()["error"]  # the message names the bad field
    assert Instance.objects.filter(status=S.IDLE).count() == 3
    assert not InstanceEvent.objects.filter(to_status=S.CLAIMING).exists()
    assert _calls(agentmail, "POST", "/inboxes") == 0


def test_it_a_failed_email_provisioning_leaves_no_inbox_no_key_and_an_idle_instance(pool, agentmail):
    agentmail.replace(responses.POST, f"{AGENTMAIL}/inboxes/agent@mail.test/api-keys", status=500)
    alice = _client("alice")
    template = _template("alice")
    response = alice.post("/api/pool/claim", {"templateId": template.pk, "userConfig": USER_CONFIG}, format="json")
    assert response.status_code == 502 and "email" in response.json()["error"]
    assert _calls(agentmail, "DELETE", "/inboxes/agent@mail.test") == 1  # the inbox made for it is gone
    assert not InstanceService.objects.filter(tool_id__in=["email", "sms"]).exists()
    assert Instance.objects.filter(status=S.IDLE).count() == 3  # reset and clean again
    assert all(not fake_provider._instances[i.pk].credentials for i in pool)


def test_it_a_failure_after_the_tools_rolls_them_back_and_crashes_an_unclean_instance(pool, agentmail, monkeypatch):
    from services_app import runtime_client

    real_set_credentials = runtime_client.set_credentials

    def refuse_the_users_key(url, *, values=None, **kwargs):
        if values and any(name.startswith("TELNYX") for name in values):
            raise runtime_client.RuntimeCallError("POST /pool/credentials answered 500", status_code=500)
        return real_set_credentials(url, values=values, **kwargs)

    def dirty_reset(*args, **kwargs):
        return {"ok": True, "status": {"clean": False}}

    monkeypatch.setattr(runtime_client, "set_credentials", refuse_the_users_key)
    monkeypatch.setattr(runtime_client, "convos_reset", dirty_reset)
    alice = _client("alice")
    response = alice.post("/api/pool/claim", {"templateId": _template("alice").pk, "userConfig": USER_CONFIG}, format="json")
    assert response.status_code == 502
    crashed = Instance.objects.get(status=S.CRASHED)
    assert crashed.needs_reset  # kept out of the pool until a reset reports it clean
    assert _calls(agentmail, "DELETE", "/inboxes/agent@mail.test") == 1  # the pool's inbox, given first, taken back
    assert InstanceService.objects.filter(instance_id=crashed.pk, tool_id="email", status=ResourceStatus.DESTROYED).count() == 1
    assert not InstanceService.objects.filter(instance_id=crashed.pk, tool_id="sms").exists()
    assert not any(name.startswith("TELNYX") for name in fake_provider._instances[crashed.pk].credentials)


def test_it_one_client_cannot_use_or_see_what_another_owns(pool):
    alice, bob = _client("alice"), _client("bob")
    private = _template("alice", tools=[])
    for method, path in (("get", f"/api/templates/{private.pk}"), ("patch", f"/api/templates/{private.pk}"),
                         ("delete", f"/api/templates/{private.pk}")):
        assert getattr(bob, method)(path, {}, format="json").status_code == 404
    assert bob.post("/api/pool/claim", {"templateId": private.pk}, format="json").status_code == 404
    assert Instance.objects.filter(status=S.IDLE).count() == 3

    mine = alice.post("/api/pool/claim", {"templateId": private.pk}, format="json").json()["instanceId"]
    assert [i["id"] for i in bob.get("/api/pool/status").json()["instances"]] == []
    assert [i["id"] for i in alice.get("/api/pool/status").json()["instances"]] == [mine]
    assert bob.post(f"/api/pool/instances/{mine}/clone", {}, format="json").status_code == 404
    for path in (f"/api/pool/instances/{mine}/recheck", f"/api/pool/instances/{mine}/redeploy"):
        assert bob.post(path, {}, format="json").status_code == 403


def test_it_model_override_needs_the_templates_permission(pool):
    alice = _client("alice")
    fixed, open_ = _template("alice", tools=[]), _template("alice", tools=[], allow_override=True)
    refused = alice.post("/api/pool/claim", {"templateId": fixed.pk, "model": "other/model"}, format="json")
    assert refused.status_code == 400 and "model" in refused.json()["error"]
    assert Instance.objects.filter(status=S.IDLE).count() == 3
    allowed = alice.post("/api/pool/claim", {"templateId": open_.pk, "model": "other/model"}, format="json")
    assert allowed.status_code == 200
    assert Instance.objects.get(pk=allowed.json()["instanceId"]).model == "other/model"


def test_it_clone_claims_a_sibling_from_the_same_template(pool):
    alice = _client("alice")
    template = _template("alice", tools=[])
    parent = alice.post("/api/pool/claim", {"templateId": template.pk, "instructions": "Custom."}, format="json").json()["instanceId"]
    clone = alice.post(f"/api/pool/instances/{parent}/clone", {}, format="json")
    assert clone.status_code == 200, clone.content
    child = Instance.objects.get(pk=clone.json()["instanceId"])
    assert (child.parent_instance_id, child.template_id, child.owner_id, child.instructions) == (parent, template.pk, "alice", "Custom.")


def test_it_template_sync_pushes_name_and_instructions_and_reports_failures(pool, monkeypatch):
    alice = _client("alice")
    template = _template("alice", tools=[])
    ids = [alice.post("/api/pool/claim", {"templateId": template.pk}, format="json").json()["instanceId"] for _ in range(2)]
    AgentTemplate.objects.filter(pk=template.pk).update(agent_name="Concierge v2", instructions="Book better things.")
    fake_provider._instances.pop(ids[1])  # this one has vanished: its sync must fail, loudly

    result = template_sync(template_id=template.pk, actor="cli")
    assert result["synced"] == [ids[0]] and set(result["failed"]) == {ids[1]}
    synced = Instance.objects.get(pk=ids[0])
    assert synced.agent_name == "Concierge v2" and synced.instructions == "Book better things."
    assert fake_provider._instances[ids[0]].instructions == "Book better things."
    assert "template sync failed" in Instance.objects.get(pk=ids[1]).last_error


def test_it_no_user_credential_appears_in_logs_responses_or_admin(pool, agentmail, admin_client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous, root.level = root.level, logging.DEBUG
    try:
        alice = _client("alice")
        template = _template("alice")
        texts = [alice.post("/api/pool/claim", {"templateId": template.pk, "userConfig": USER_CONFIG}, format="json").content.decode()]
        texts.append(alice.post("/api/pool/claim", {"templateId": template.pk, "userConfig": {"telnyxApiKey": TELNYX_KEY}},
                                format="json").content.decode())  # a refused one too
        texts.append(alice.get("/api/pool/status").content.decode())
        operator = APIClient()
        operator.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}")
        texts.append(operator.get("/api/pool/status").content.decode())
        for path in ("/admin/pool_app/instance/", "/admin/pool_app/instanceevent/", "/admin/pool_app/claimrequest/",
                     "/admin/services_app/instanceservice/", "/admin/services_app/instanceinfra/", "/admin/templates_app/agenttemplate/"):
            page = admin_client.get(path)
            assert page.status_code == 200, path
            texts.append(page.content.decode())
        instance_id = Instance.objects.get(status=S.CLAIMED).pk
        texts.append(admin_client.get(f"/admin/pool_app/instance/{instance_id}/change/").content.decode())
    finally:
        root.removeHandler(handler)
        root.level = previous
    texts.append(stream.getvalue())
    blob = "\n".join(texts)
    assert "Concierge" in blob and "userConfig" in blob  # the capture really saw both claims
    assert TELNYX_KEY not in blob
    assert "am-scoped-key-0123456789abc" not in blob


def test_it_the_admin_action_pushes_a_template_and_reports_each_failure(pool, admin_client):
    alice = _client("alice")
    template = _template("alice", tools=[])
    ids = [alice.post("/api/pool/claim", {"templateId": template.pk}, format="json").json()["instanceId"] for _ in range(2)]
    AgentTemplate.objects.filter(pk=template.pk).update(instructions="Version 2.")
    fake_provider._instances.pop(ids[1])
    response = admin_client.post("/admin/templates_app/agenttemplate/", {"action": "push_to_instances", "_selected_action": [template.pk]},
                                 follow=True)
    page = response.content.decode()
    assert "synced 1 instance(s)" in page and f"instance {ids[1]} failed to sync" in page
    assert Instance.objects.get(pk=ids[0]).instructions == "Version 2."
    assert InstanceEvent.objects.filter(instance_id=ids[0], actor="admin", reason__contains="synced").exists()
