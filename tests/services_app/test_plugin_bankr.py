"""Bankr plugin (assumed contract, see its module docstring), faked at the HTTP layer."""
from __future__ import annotations

import json

import pytest
import requests

from services_app.plugins.bankr import plugin
from services_app.plugins.base import POOL, USER
from services_app.providers.base import ProviderError
from tests.services_app.plugin_calls import assert_call

BASE = "https://bankr.test"
POOL_KEY = "bk_poolkey0123456789abcdefghijkl"
SECRET = "bk_instancekey9876543210zyxwvuts"
WALLET = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
CREATED = {"id": "key-1", "key": SECRET, "walletAddress": WALLET}


@pytest.fixture(autouse=True)
def configured(settings):
    settings.BANKR_API_URL = BASE
    settings.BANKR_API_KEY = POOL_KEY


def _assert_call(call, method: str, url: str, body=None) -> None:
    assert_call(call, method, url, key=POOL_KEY, body=body)


def test_it_describes_itself():
    assert (plugin.tool_id, plugin.name, plugin.provisioning, plugin.always) == ("crypto", "Bankr", (POOL, USER), False)


def test_it_mints_a_per_instance_key_and_never_hands_out_the_pools(mocked):
    mocked.post(f"{BASE}/agent/keys", json=CREATED, status=201)
    resource = plugin.create(instance_id="abc")
    _assert_call(mocked.calls[0], "POST", f"{BASE}/agent/keys", {"name": "convos-abc"})
    assert resource.resource_id == "key-1"
    assert resource.env_vars == {"BANKR_API_KEY": SECRET}
    assert resource.config == {"name": "convos-abc", "walletAddress": WALLET}
    assert POOL_KEY not in json.dumps([resource.env_vars, resource.config])


def test_it_accepts_the_answer_wrapped_in_data(mocked):
    mocked.post(f"{BASE}/agent/keys", json={"data": CREATED})
    assert plugin.create(instance_id="abc").resource_id == "key-1"


def test_it_the_base_url_is_configurable(mocked, settings):
    settings.BANKR_API_URL = "http://localhost:9/x"
    mocked.post("http://localhost:9/x/agent/keys", json=CREATED)
    plugin.create(instance_id="abc")
    assert mocked.calls[0].request.url == "http://localhost:9/x/agent/keys"


def test_it_retries_a_429_honouring_retry_after(mocked, slept):
    mocked.post(f"{BASE}/agent/keys", status=429, headers={"Retry-After": "1"})
    mocked.post(f"{BASE}/agent/keys", json=CREATED)
    assert plugin.create(instance_id="abc").resource_id == "key-1"
    assert slept == [1.0]


def test_it_a_5xx_on_create_is_not_retried_but_on_destroy_it_is(mocked, slept):
    mocked.post(f"{BASE}/agent/keys", status=500)
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is False and len(mocked.calls) == 1
    mocked.delete(f"{BASE}/agent/keys/key-1", status=502)
    mocked.delete(f"{BASE}/agent/keys/key-1", status=204)
    plugin.destroy(resource_id="key-1")
    _assert_call(mocked.calls[2], "DELETE", f"{BASE}/agent/keys/key-1")


def test_it_a_timeout_on_destroy_is_retried(mocked, slept):
    mocked.delete(f"{BASE}/agent/keys/key-1", body=requests.ConnectTimeout())
    mocked.delete(f"{BASE}/agent/keys/key-1", status=200, json={"ok": True})
    plugin.destroy(resource_id="key-1")
    assert len(mocked.calls) == 2 and len(slept) == 1


def test_it_a_malformed_answer_is_an_error(mocked):
    mocked.post(f"{BASE}/agent/keys", json={"id": "key-1"})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.message == "Bankr: POST /agent/keys: malformed response (no key)"
    mocked.post(f"{BASE}/agent/keys", body="[")
    with pytest.raises(ProviderError, match="malformed response"):
        plugin.create(instance_id="abc")


def test_it_destroy_of_a_revoked_key_is_done(mocked):
    mocked.delete(f"{BASE}/agent/keys/key-1", status=404)
    plugin.destroy(resource_id="key-1")


def test_it_401_is_permanent_and_does_not_leak_the_key(mocked):
    mocked.post(f"{BASE}/agent/keys", status=401, json={"message": f"bad token {POOL_KEY}"})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is True and POOL_KEY not in raised.value.message


def test_it_is_disabled_without_a_key(settings):
    assert plugin.enabled() == (True, "")
    settings.BANKR_API_KEY = ""
    assert plugin.enabled() == (False, "BANKR_API_KEY is not set")


def test_it_user_mode_injects_the_users_key_and_names_a_missing_field():
    assert plugin.user_env_vars({"bankrApiKey": "bk_user"}) == {"BANKR_API_KEY": "bk_user"}
    with pytest.raises(ProviderError) as raised:
        plugin.user_env_vars({"bankrKey": "bk_secret"})
    assert raised.value.permanent is True and raised.value.message == "crypto: userConfig.bankrApiKey is required"
