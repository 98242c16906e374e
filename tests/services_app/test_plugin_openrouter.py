"""OpenRouter plugin: per-instance spend-limited keys, faked at the HTTP layer."""
from __future__ import annotations

import json

import pytest
import requests

from services_app.plugins.base import POOL
from services_app.plugins.openrouter import plugin
from services_app.providers.base import ProviderError
from tests.services_app.plugin_calls import assert_call

BASE = "https://openrouter.test/api/v1"
MGMT = "sk-or-v1-fake_management_key_0123"
SECRET = "sk-or-v1-fake_instance_key_9876"
CREATED = {"key": SECRET, "data": {"hash": "h4sh", "name": "convos-abc", "limit": 20.0, "limit_reset": "monthly"}}


@pytest.fixture(autouse=True)
def configured(settings):
    settings.OPENROUTER_API_URL = BASE
    settings.OPENROUTER_MANAGEMENT_KEY = MGMT
    settings.OPENROUTER_KEY_LIMIT = 20.0
    settings.OPENROUTER_KEY_LIMIT_RESET = "monthly"


def _assert_call(call, method: str, url: str, body=None) -> None:
    assert_call(call, method, url, key=MGMT, body=body)


def test_it_describes_itself():
    assert (plugin.tool_id, plugin.name, plugin.provisioning, plugin.always) == ("openrouter", "OpenRouter", (POOL,), True)


def test_it_creates_a_limited_key_and_hands_only_that_key_to_the_instance(mocked):
    mocked.post(f"{BASE}/keys", json=CREATED, status=201)
    resource = plugin.create(instance_id="abc")
    _assert_call(mocked.calls[0], "POST", f"{BASE}/keys", {"name": "convos-abc", "limit": 20.0, "limit_reset": "monthly"})
    assert resource.resource_id == "h4sh"
    assert resource.env_vars == {"OPENROUTER_API_KEY": SECRET}
    assert resource.config == {"name": "convos-abc", "limit": 20.0, "limit_reset": "monthly"}
    assert SECRET not in json.dumps(resource.config) and MGMT not in json.dumps(resource.config)


def test_it_reads_limit_settings_at_call_time(mocked, settings):
    settings.OPENROUTER_KEY_LIMIT = 5
    settings.OPENROUTER_KEY_LIMIT_RESET = "Weekly"
    mocked.post(f"{BASE}/keys", json=CREATED)
    plugin.create(instance_id="abc")
    assert json.loads(mocked.calls[0].request.body) == {"name": "convos-abc", "limit": 5.0, "limit_reset": "weekly"}


def test_it_the_base_url_is_configurable(mocked, settings):
    settings.OPENROUTER_API_URL = "http://localhost:9/x/"
    mocked.post("http://localhost:9/x/keys", json=CREATED)
    plugin.create(instance_id="abc")
    assert mocked.calls[0].request.url == "http://localhost:9/x/keys"


def test_it_retries_a_429_honouring_retry_after(mocked, slept):
    mocked.post(f"{BASE}/keys", status=429, headers={"Retry-After": "2"})
    mocked.post(f"{BASE}/keys", json=CREATED)
    assert plugin.create(instance_id="abc").resource_id == "h4sh"
    assert slept == [2.0] and len(mocked.calls) == 2


def test_it_a_5xx_on_create_is_not_retried_because_a_key_may_exist(mocked, slept):
    mocked.post(f"{BASE}/keys", status=500)
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is False and len(mocked.calls) == 1


def test_it_a_5xx_on_destroy_is_retried(mocked, slept):
    mocked.delete(f"{BASE}/keys/h4sh", status=503)
    mocked.delete(f"{BASE}/keys/h4sh", json={"data": {"success": True}})
    plugin.destroy(resource_id="h4sh")
    _assert_call(mocked.calls[1], "DELETE", f"{BASE}/keys/h4sh")
    assert len(slept) == 1


def test_it_a_timeout_on_destroy_is_retried_and_on_create_surfaces_as_transient(mocked, slept):
    mocked.delete(f"{BASE}/keys/h4sh", body=requests.ReadTimeout())
    mocked.delete(f"{BASE}/keys/h4sh", status=204)
    plugin.destroy(resource_id="h4sh")
    mocked.post(f"{BASE}/keys", body=requests.ReadTimeout())
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is False and "timed out" in raised.value.message


def test_it_a_malformed_create_answer_is_an_error_without_the_body(mocked):
    mocked.post(f"{BASE}/keys", json={"data": {"hash": "h4sh"}})  # no secret
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.message == "OpenRouter: POST /keys: malformed response (no key)"
    mocked.post(f"{BASE}/keys", body="<html>", content_type="text/html")
    with pytest.raises(ProviderError, match="malformed response"):
        plugin.create(instance_id="abc")


def test_it_destroy_of_a_missing_key_is_done(mocked):
    mocked.delete(f"{BASE}/keys/gone", status=404, json={"error": {"message": "Not found"}})
    plugin.destroy(resource_id="gone")
    _assert_call(mocked.calls[0], "DELETE", f"{BASE}/keys/gone")


def test_it_401_is_permanent_and_does_not_leak_the_management_key(mocked):
    mocked.post(f"{BASE}/keys", status=401, json={"error": {"message": f"Bad key {MGMT}", "code": 401}})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is True
    assert MGMT not in raised.value.message and "HTTP 401" in raised.value.message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("OPENROUTER_MANAGEMENT_KEY", "", "OPENROUTER_MANAGEMENT_KEY is not set"),
        ("OPENROUTER_KEY_LIMIT_RESET", "yearly", "OPENROUTER_KEY_LIMIT_RESET must be one of daily, weekly, monthly"),
        ("OPENROUTER_KEY_LIMIT", 0, "OPENROUTER_KEY_LIMIT must be a positive number of USD"),
        ("OPENROUTER_API_URL", "", "OPENROUTER_API_URL is not set"),
    ],
)
def test_it_is_disabled_with_a_reason_when_misconfigured(settings, field, value, reason):
    assert plugin.enabled() == (True, "")
    setattr(settings, field, value)
    assert plugin.enabled() == (False, reason)


def test_it_takes_no_user_config():
    with pytest.raises(ProviderError) as raised:
        plugin.user_env_vars({"openrouterApiKey": "x"})
    assert raised.value.permanent is True
