"""AgentMail plugin: one inbox per instance with an inbox-scoped key, faked at the HTTP layer."""
from __future__ import annotations

import json

import pytest
import requests

from services_app.plugins.agentmail import plugin
from services_app.plugins.base import POOL, USER
from services_app.providers.base import ProviderError
from tests.services_app.plugin_calls import assert_call

BASE = "https://agentmail.test/v0"
ORG_KEY = "am_organizationkey0123456789abcdef"
SCOPED = "am_inboxscopedkey9876543210fedcba"
INBOX = "convos-abc@mail.convos.test"
INBOX_URL = f"{BASE}/inboxes/{INBOX}"
INBOX_JSON = {"inbox_id": INBOX, "email": INBOX, "display_name": "Convos Agent", "client_id": "convos-abc"}
KEY_JSON = {"api_key_id": "key_1", "api_key": SCOPED, "prefix": "am_inbo", "name": "convos-abc", "inbox_id": INBOX}


@pytest.fixture(autouse=True)
def configured(settings):
    settings.AGENTMAIL_API_URL = BASE
    settings.AGENTMAIL_API_KEY = ORG_KEY
    settings.AGENTMAIL_DOMAIN = "mail.convos.test"


def _assert_call(call, method: str, url: str, body=None) -> None:
    assert_call(call, method, url, key=ORG_KEY, body=body)


def test_it_describes_itself():
    assert (plugin.tool_id, plugin.name, plugin.provisioning, plugin.always) == ("email", "AgentMail", (POOL, USER), False)


def test_it_creates_an_inbox_and_gives_the_instance_only_an_inbox_scoped_key(mocked):
    mocked.post(f"{BASE}/inboxes", json=INBOX_JSON)
    mocked.post(f"{INBOX_URL}/api-keys", json=KEY_JSON)
    resource = plugin.create(instance_id="abc")
    _assert_call(mocked.calls[0], "POST", f"{BASE}/inboxes",
                 {"username": "convos-abc", "domain": "mail.convos.test", "display_name": "Convos Agent", "client_id": "convos-abc"})
    _assert_call(mocked.calls[1], "POST", f"{INBOX_URL}/api-keys", {"name": "convos-abc"})
    assert resource.resource_id == INBOX
    assert resource.env_vars == {"AGENTMAIL_API_KEY": SCOPED, "AGENTMAIL_INBOX_ID": INBOX}
    assert ORG_KEY not in json.dumps(resource.env_vars)
    assert resource.config == {"inbox_id": INBOX, "email": INBOX, "display_name": "Convos Agent", "api_key_id": "key_1"}
    assert SCOPED not in json.dumps(resource.config)


def test_it_omits_an_empty_domain_and_sanitises_the_username(mocked, settings):
    settings.AGENTMAIL_DOMAIN = ""
    mocked.post(f"{BASE}/inboxes", json=INBOX_JSON)
    mocked.post(f"{INBOX_URL}/api-keys", json=KEY_JSON)
    plugin.create(instance_id="Ab C/1")
    assert json.loads(mocked.calls[0].request.body) == {"username": "convos-ab-c-1", "display_name": "Convos Agent", "client_id": "convos-Ab C/1"}


def test_it_the_base_url_is_configurable(mocked, settings):
    settings.AGENTMAIL_API_URL = "http://localhost:9/x"
    mocked.post("http://localhost:9/x/inboxes", json=INBOX_JSON)
    mocked.post(f"http://localhost:9/x/inboxes/{INBOX}/api-keys", json=KEY_JSON)
    plugin.create(instance_id="abc")
    assert [c.request.url for c in mocked.calls] == ["http://localhost:9/x/inboxes", f"http://localhost:9/x/inboxes/{INBOX}/api-keys"]


def test_it_retries_429_with_retry_after_and_5xx_on_the_idempotent_create(mocked, slept):
    mocked.post(f"{BASE}/inboxes", status=429, headers={"Retry-After": "1.5"})
    mocked.post(f"{BASE}/inboxes", status=500)
    mocked.post(f"{BASE}/inboxes", json=INBOX_JSON)
    mocked.post(f"{INBOX_URL}/api-keys", json=KEY_JSON)
    assert plugin.create(instance_id="abc").resource_id == INBOX
    assert slept[0] == 1.5 and len(slept) == 2
    assert all(json.loads(c.request.body)["client_id"] == "convos-abc" for c in mocked.calls[:3])


def test_it_a_timeout_on_the_idempotent_create_is_retried(mocked, slept):
    mocked.post(f"{BASE}/inboxes", body=requests.ReadTimeout())
    mocked.post(f"{BASE}/inboxes", json=INBOX_JSON)
    mocked.post(f"{INBOX_URL}/api-keys", json=KEY_JSON)
    assert plugin.create(instance_id="abc").env_vars["AGENTMAIL_API_KEY"] == SCOPED


def test_it_a_transient_key_mint_failure_also_deletes_the_inbox(mocked, slept):
    mocked.post(f"{BASE}/inboxes", json=INBOX_JSON)
    mocked.post(f"{INBOX_URL}/api-keys", status=500)
    mocked.delete(INBOX_URL, status=204)
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is False
    # No one retries a failed claim on the same instance, so nothing would ever use that inbox.
    assert [c.request.method for c in mocked.calls] == ["POST", "POST", "DELETE"]


def test_it_a_permanent_key_mint_failure_deletes_the_inbox(mocked):
    mocked.post(f"{BASE}/inboxes", json=INBOX_JSON)
    mocked.post(f"{INBOX_URL}/api-keys", status=403, json={"name": "Forbidden", "message": "scoped keys need a paid plan"})
    mocked.delete(INBOX_URL, status=204)
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is True and "scoped keys need a paid plan" in raised.value.message
    _assert_call(mocked.calls[2], "DELETE", INBOX_URL)


def test_it_a_malformed_answer_is_an_error(mocked):
    mocked.post(f"{BASE}/inboxes", json={"email": INBOX})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.message == "AgentMail: POST /inboxes: malformed response (no inbox_id)"
    mocked.post(f"{BASE}/inboxes", body="oops")
    with pytest.raises(ProviderError, match="malformed response"):
        plugin.create(instance_id="abc")


def test_it_401_is_permanent_and_does_not_leak_the_key(mocked):
    mocked.post(f"{BASE}/inboxes", status=401, json={"name": "Unauthorized", "message": f"invalid api key {ORG_KEY}"})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is True and ORG_KEY not in raised.value.message
    assert len(mocked.calls) == 1


def test_it_destroy_revokes_the_inbox_keys_then_deletes_the_inbox(mocked, slept):
    mocked.get(f"{INBOX_URL}/api-keys", status=503)
    mocked.get(f"{INBOX_URL}/api-keys", json={"count": 2, "api_keys": [{"api_key_id": "key_1"}, {"api_key_id": "key_2"}]})
    mocked.delete(f"{INBOX_URL}/api-keys/key_1", status=204)
    mocked.delete(f"{INBOX_URL}/api-keys/key_2", status=404)  # already revoked
    mocked.delete(INBOX_URL, status=200, json={})
    plugin.destroy(resource_id=INBOX)
    _assert_call(mocked.calls[1], "GET", f"{INBOX_URL}/api-keys")
    _assert_call(mocked.calls[2], "DELETE", f"{INBOX_URL}/api-keys/key_1")
    _assert_call(mocked.calls[4], "DELETE", INBOX_URL)


def test_it_destroy_of_a_missing_inbox_is_done(mocked):
    mocked.get(f"{INBOX_URL}/api-keys", status=404, json={"name": "NotFoundError", "message": "Inbox not found"})
    plugin.destroy(resource_id=INBOX)
    assert len(mocked.calls) == 1
    mocked.get(f"{INBOX_URL}/api-keys", json={"count": 0, "api_keys": []})
    mocked.delete(INBOX_URL, status=404)
    plugin.destroy(resource_id=INBOX)


def test_it_is_disabled_without_a_key(settings):
    assert plugin.enabled() == (True, "")
    settings.AGENTMAIL_API_KEY = ""
    assert plugin.enabled() == (False, "AGENTMAIL_API_KEY is not set")


def test_it_user_mode_injects_the_users_credentials():
    env = plugin.user_env_vars({"agentmailApiKey": "am_user", "agentmailInboxId": "me@agentmail.to"})
    assert env == {"AGENTMAIL_API_KEY": "am_user", "AGENTMAIL_INBOX_ID": "me@agentmail.to"}


@pytest.mark.parametrize(
    ("user_config", "message"),
    [
        ({"agentmailInboxId": "me@agentmail.to"}, "email: userConfig.agentmailApiKey is required"),
        ({"agentmailApiKey": "am_user-secret"}, "email: userConfig.agentmailInboxId is required"),
        ({"agentmailApiKey": "am_user secret", "agentmailInboxId": "me@agentmail.to"}, "email: userConfig.agentmailApiKey is malformed"),
        ({"agentmailApiKey": 12, "agentmailInboxId": "me@agentmail.to"}, "email: userConfig.agentmailApiKey must be a string"),
    ],
)
def test_it_user_mode_errors_name_the_field_not_the_value(user_config, message):
    with pytest.raises(ProviderError) as raised:
        plugin.user_env_vars(user_config)
    assert raised.value.permanent is True and raised.value.message == message
    assert "secret" not in raised.value.message
