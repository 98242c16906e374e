"""The provider proxy (POOL_URL/api/proxy/*): an instance's own token, its own inbox and number only,
the pool's keys added upstream and never handed to an instance."""
from __future__ import annotations

import json
import re
import secrets

import pytest
import requests
import responses
from rest_framework.test import APIClient

from services_app import facade, instance_secrets
from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.providers.fake import fake_instance
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

AGENTMAIL = "https://agentmail.test/v0"
TELNYX = "https://telnyx.test/v2"
OWN_INBOX, OTHER_INBOX = "own@mail.test", "other@mail.test"
OWN_NUMBER, OTHER_NUMBER = "+15550000001", "+15550000002"


@pytest.fixture
def keys(settings) -> dict[str, str]:
    settings.AGENTMAIL_API_URL, settings.AGENTMAIL_API_KEY = AGENTMAIL, secrets.token_hex(16)
    settings.TELNYX_API_URL, settings.TELNYX_API_KEY = TELNYX, secrets.token_hex(16)
    settings.TELNYX_MESSAGING_PROFILE_ID = ""
    return {"agentmail": settings.AGENTMAIL_API_KEY, "telnyx": settings.TELNYX_API_KEY}


def _instance(instance_id: str, *, inbox: str, number: str) -> str:
    """An instance with a pool inbox and number; returns its services token."""
    token = secrets.token_hex(24)
    infra = InstanceInfra.objects.create(instance_id=instance_id, provider="fake", secret_nonce=secrets.token_hex(8),
                                         instance_services_token_hash=instance_secrets.token_hash(token))
    InstanceService.objects.create(instance=infra, tool_id="email", resource_id=inbox, config={"inbox_id": inbox, "email": inbox})
    InstanceService.objects.create(instance=infra, tool_id="sms", resource_id=number,
                                   config={"phone_number": number, "messaging_profile_id": "mp-own"})
    return token


@pytest.fixture
def tokens(keys) -> dict[str, str]:
    return {"own": _instance("proxyown0001", inbox=OWN_INBOX, number=OWN_NUMBER),
            "other": _instance("proxyoth0001", inbox=OTHER_INBOX, number=OTHER_NUMBER)}


def _client(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_it_an_instance_sends_email_from_its_own_inbox_with_the_pools_key(tokens, keys, mocked):
    mocked.post(f"{AGENTMAIL}/inboxes/{OWN_INBOX}/messages/send", json={"message_id": "m1", "thread_id": "t1"})
    message = {"to": ["b@x.test"], "subject": "S", "text": "T"}
    for path in ("/api/proxy/email/send", f"/api/proxy/email/inboxes/{OWN_INBOX}/messages/send"):
        answer = _client(tokens["own"]).post(path, {**message, "smuggled": "x"}, format="json")
        assert answer.status_code == 200 and answer.json() == {"message_id": "m1", "thread_id": "t1"}
    for call in mocked.calls:
        assert call.request.headers["Authorization"] == f"Bearer {keys['agentmail']}"
        assert json.loads(call.request.body) == message  # only AgentMail's own fields go on


def test_it_an_instance_lists_only_its_own_inbox(tokens, keys, mocked):
    mocked.get(f"{AGENTMAIL}/inboxes/{OWN_INBOX}/messages", json={"count": 0, "messages": []})
    answer = _client(tokens["own"]).get("/api/proxy/email/messages?limit=5&evil=1")
    assert answer.status_code == 200 and answer.json() == {"count": 0, "messages": []}
    assert mocked.calls[0].request.url == f"{AGENTMAIL}/inboxes/{OWN_INBOX}/messages?limit=5"
    assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {keys['agentmail']}"
    info = _client(tokens["own"]).get("/api/proxy/info").json()
    assert info == {"instanceId": "proxyown0001", "email": OWN_INBOX, "phone": OWN_NUMBER}


def test_it_another_instances_inbox_is_403_and_nothing_goes_upstream(tokens, mocked):
    own = _client(tokens["own"])
    for response in (own.post(f"/api/proxy/email/inboxes/{OTHER_INBOX}/messages/send", {"to": ["b@x.test"], "text": "T"}, format="json"),
                     own.post("/api/proxy/email/send", {"inbox_id": OTHER_INBOX, "to": ["b@x.test"], "text": "T"}, format="json"),
                     own.get(f"/api/proxy/email/inboxes/{OTHER_INBOX}/messages"),
                     own.get(f"/api/proxy/email/messages?inbox_id={OTHER_INBOX}")):
        assert response.status_code == 403 and response.json()["code"] == "not_own_inbox"
    assert len(mocked.calls) == 0


def test_it_refuses_the_pools_key_a_missing_or_wrong_token(tokens, settings, mocked):
    for token, status in ((settings.SERVICES_API_KEY, 403), (None, 401), (secrets.token_hex(24), 401), (settings.POOL_API_KEY, 401)):
        for response in (_client(token).post("/api/proxy/email/send", {"to": ["b@x.test"], "text": "T"}, format="json"),
                         _client(token).post("/api/proxy/sms/send", {"to": "+15559990000", "text": "hi"}, format="json"),
                         _client(token).get("/api/proxy/email/messages")):
            assert response.status_code == status, (token is None, response.content)
            assert response.json()["error"]
    assert len(mocked.calls) == 0


def test_it_a_torn_down_instance_or_one_without_the_resource_gets_nothing(tokens, mocked):
    InstanceService.objects.filter(instance_id="proxyown0001", tool_id="sms").update(status=ResourceStatus.DESTROYED)
    response = _client(tokens["own"]).post("/api/proxy/sms/send", {"to": "+15559990000", "text": "hi"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_provisioned"
    InstanceInfra.objects.filter(instance_id="proxyown0001").update(torn_down_at="2026-01-01T00:00:00Z")
    assert _client(tokens["own"]).get("/api/proxy/email/messages").status_code == 401
    assert len(mocked.calls) == 0


def test_it_sms_goes_from_the_own_number_with_the_pools_key(tokens, keys, mocked):
    mocked.post(f"{TELNYX}/messages", json={"data": {"id": "sms-1", "record_type": "message"}})
    own = _client(tokens["own"])
    for body in ({"to": "+15559990000", "text": "hi"}, {"from": OWN_NUMBER, "to": "+15559990000", "text": "hi", "webhook_url": "https://x.test"}):
        answer = own.post("/api/proxy/sms/send", body, format="json")
        assert answer.status_code == 200 and answer.json()["data"]["id"] == "sms-1"
    for call in mocked.calls:
        assert call.request.headers["Authorization"] == f"Bearer {keys['telnyx']}"
        assert json.loads(call.request.body) == {"from": OWN_NUMBER, "to": "+15559990000", "text": "hi", "messaging_profile_id": "mp-own"}


def test_it_sms_from_another_number_is_403(tokens, mocked):
    response = _client(tokens["own"]).post("/api/proxy/sms/send", {"from": OTHER_NUMBER, "to": "+15559990000", "text": "hi"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "not_own_number"
    assert len(mocked.calls) == 0


def test_it_bad_or_oversized_bodies_are_refused_before_going_upstream(tokens, mocked):
    own = _client(tokens["own"])
    assert own.post("/api/proxy/sms/send", {"text": "hi"}, format="json").status_code == 400
    assert own.post("/api/proxy/sms/send", ["not", "an", "object"], format="json").status_code == 400
    assert own.post("/api/proxy/email/send", {"text": "no recipient"}, format="json").status_code == 400
    huge = own.post("/api/proxy/email/send", {"to": ["b@x.test"], "text": "x" * 300_000}, format="json")
    assert huge.status_code == 413 and huge.json()["code"] == "too_large"
    assert len(mocked.calls) == 0


def test_it_upstream_errors_come_back_as_4xx_or_502_with_a_message_never_500(tokens, keys, mocked):
    send = f"{AGENTMAIL}/inboxes/{OWN_INBOX}/messages/send"
    mocked.post(f"{TELNYX}/messages", status=422, json={"errors": [{"code": "40310", "title": "Invalid 'to' address"}]})
    mocked.post(send, status=401, json={"message": f"bad key {keys['agentmail']}"})
    mocked.post(send, status=503, body="<html>down</html>")
    mocked.post(send, body=requests.ConnectTimeout("slow"))
    mocked.post(send, status=200, body="not json")
    own = _client(tokens["own"])

    refused = own.post("/api/proxy/sms/send", {"to": "nope", "text": "hi"}, format="json")
    assert refused.status_code == 422 and "Invalid 'to' address" in refused.json()["error"]
    mail = {"to": ["b@x.test"], "text": "T"}
    answers = [own.post("/api/proxy/email/send", mail, format="json") for _ in range(4)]
    assert [a.status_code for a in answers] == [502, 502, 502, 502]
    assert "HTTP 401" in answers[0].json()["error"] and keys["agentmail"] not in answers[0].content.decode()
    assert "HTTP 503" in answers[1].json()["error"]
    assert "could not be reached" in answers[2].json()["error"] and "not JSON" in answers[3].json()["error"]


def test_it_an_unconfigured_provider_is_503(tokens, settings, mocked):
    settings.TELNYX_API_KEY = ""
    response = _client(tokens["own"]).post("/api/proxy/sms/send", {"to": "+15559990000", "text": "hi"}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "not_configured"


def test_it_no_provider_account_key_reaches_an_instance_in_pool_mode(settings, keys):
    """Provision email and SMS for real (fake infra, faked providers): what the instance is given
    holds its number, the proxy's location and an inbox-scoped key, never an account key."""
    settings.INFRA_PROVIDER = "fake"
    settings.OPENROUTER_MANAGEMENT_KEY = ""
    settings.POOL_URL = "https://pool.test"
    scoped = secrets.token_hex(16)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+/"))
        rsps.add(responses.POST, f"{AGENTMAIL}/inboxes", json={"inbox_id": OWN_INBOX, "email": OWN_INBOX})
        rsps.add(responses.POST, f"{AGENTMAIL}/inboxes/{OWN_INBOX}/api-keys", json={"api_key": scoped, "api_key_id": "k1"})
        rsps.add(responses.GET, f"{TELNYX}/messaging_profiles", json={"data": [{"id": "mp-1"}]})
        rsps.add(responses.GET, f"{TELNYX}/available_phone_numbers", json={"data": [{"phone_number": OWN_NUMBER}]})
        rsps.add(responses.POST, f"{TELNYX}/number_orders", json={"data": {"id": "o1", "status": "pending",
                                                                         "phone_numbers": [{"phone_number": OWN_NUMBER}]}})
        facade.create_instance("proxydeliv01")
        facade.configure("proxydeliv01", agent_name="A", instructions="")
        facade.provision_tool("proxydeliv01", "email")
        facade.provision_tool("proxydeliv01", "sms")
    instance = fake_instance("proxydeliv01")
    delivered = {k: v for payload in instance.credentials_received for k, v in payload.items()}
    assert delivered["TELNYX_PHONE_NUMBER"] == OWN_NUMBER and delivered["POOL_URL"] == "https://pool.test"
    assert delivered["AGENTMAIL_API_KEY"] == scoped and "TELNYX_API_KEY" not in delivered
    everything = json.dumps([instance.variables, instance.credentials_received, instance.credentials])
    for account_key in keys.values():
        assert account_key not in everything
