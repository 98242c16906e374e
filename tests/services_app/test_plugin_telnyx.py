"""Telnyx plugin: one US SMS number per instance, faked at the HTTP layer."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from services_app.plugins.base import POOL, USER
from services_app.plugins.telnyx import MAX_ORDER_ATTEMPTS, plugin
from services_app.providers.base import ProviderError

BASE = "https://telnyx.test/v2"
KEY = "KEY0123456789ABCDEFabcdef_accountkey"
PROFILE = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
SEARCH = [("filter[country_code]", "US"), ("filter[features][]", "sms"), ("filter[limit]", "20")]
NUMBERS = ["+15550000001", "+15550000002", "+15550000003"]


def _available(*numbers: str) -> dict:
    return {"data": [{"record_type": "available_phone_number", "phone_number": n, "features": [{"name": "sms"}]} for n in numbers],
            "metadata": {"total_results": len(numbers)}}


def _order(number: str) -> dict:
    return {"data": {"id": "order-1", "record_type": "number_order", "status": "pending", "messaging_profile_id": PROFILE,
                     "phone_numbers": [{"id": "nopn-1", "record_type": "number_order_phone_number", "phone_number": number, "status": "pending"}]}}


def _order_body(number: str, profile: str = PROFILE) -> dict:
    return {"phone_numbers": [{"phone_number": number}], "messaging_profile_id": profile, "customer_reference": "convos-abc"}


@pytest.fixture(autouse=True)
def configured(settings):
    settings.TELNYX_API_URL = BASE
    settings.TELNYX_API_KEY = KEY
    settings.TELNYX_MESSAGING_PROFILE_ID = PROFILE


def _assert_call(call, method: str, path: str, query=None, body=None) -> None:
    url = urlsplit(call.request.url)
    assert call.request.method == method
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{BASE}{path}"
    assert parse_qsl(url.query) == (query or [])
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    if body is not None:
        assert json.loads(call.request.body) == body


def test_it_describes_itself():
    assert (plugin.tool_id, plugin.name, plugin.provisioning, plugin.always) == ("sms", "Telnyx", (POOL, USER), False)


def test_it_searches_then_orders_a_number_on_the_configured_profile(mocked, settings):
    settings.POOL_URL = "https://pool.test"
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(*NUMBERS))
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[0]))
    resource = plugin.create(instance_id="abc")
    _assert_call(mocked.calls[0], "GET", "/available_phone_numbers", SEARCH)
    _assert_call(mocked.calls[1], "POST", "/number_orders", body=_order_body(NUMBERS[0]))
    assert resource.resource_id == NUMBERS[0]
    assert resource.config == {"phone_number": NUMBERS[0], "messaging_profile_id": PROFILE, "order_id": "order-1", "order_status": "pending"}
    # The number and where the provider proxy is: never the pool's account key.
    assert resource.env_vars == {"TELNYX_PHONE_NUMBER": NUMBERS[0], "TELNYX_MESSAGING_PROFILE_ID": PROFILE, "POOL_URL": "https://pool.test"}
    assert KEY not in json.dumps(resource.config) and KEY not in json.dumps(resource.env_vars)


def test_it_without_a_pool_url_it_gives_the_number_alone(mocked, settings):
    settings.POOL_URL = ""  # the instance's boot variables are then its only way to the proxy
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(NUMBERS[0]))
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[0]))
    assert plugin.create(instance_id="abc").env_vars == {"TELNYX_PHONE_NUMBER": NUMBERS[0], "TELNYX_MESSAGING_PROFILE_ID": PROFILE}


def test_it_without_a_configured_profile_it_uses_the_accounts_first(mocked, settings):
    settings.TELNYX_MESSAGING_PROFILE_ID = ""
    mocked.get(f"{BASE}/messaging_profiles", json={"data": [{"id": "mp-first"}, {"id": "mp-second"}]})
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(NUMBERS[0]))
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[0]))
    resource = plugin.create(instance_id="abc")
    _assert_call(mocked.calls[0], "GET", "/messaging_profiles")
    _assert_call(mocked.calls[2], "POST", "/number_orders", body=_order_body(NUMBERS[0], "mp-first"))
    assert resource.env_vars["TELNYX_MESSAGING_PROFILE_ID"] == "mp-first"


def test_it_an_account_without_profiles_is_a_permanent_error(mocked, settings):
    settings.TELNYX_MESSAGING_PROFILE_ID = ""
    mocked.get(f"{BASE}/messaging_profiles", json={"data": []})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is True and "no messaging profile" in raised.value.message


def test_it_a_taken_number_moves_on_to_the_next_candidate(mocked):
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(*NUMBERS))
    mocked.post(f"{BASE}/number_orders", status=409, json={"errors": [{"code": "10015", "title": "Number unavailable"}]})
    mocked.post(f"{BASE}/number_orders", status=422, json={"errors": [{"detail": "not available"}]})
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[2]))
    assert plugin.create(instance_id="abc").resource_id == NUMBERS[2]
    ordered = [json.loads(c.request.body)["phone_numbers"][0]["phone_number"] for c in mocked.calls[1:]]
    assert ordered == NUMBERS


def test_it_searches_again_when_every_candidate_was_taken(mocked):
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(NUMBERS[0]))
    mocked.post(f"{BASE}/number_orders", status=409)
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(NUMBERS[0], NUMBERS[1]))
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[1]))
    assert plugin.create(instance_id="abc").resource_id == NUMBERS[1]
    assert [c.request.method for c in mocked.calls] == ["GET", "POST", "GET", "POST"]


def test_it_ordering_is_bounded(mocked):
    many = [f"+1555000{i:04d}" for i in range(20)]
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(*many))
    mocked.post(f"{BASE}/number_orders", status=409)
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is False and f"{MAX_ORDER_ATTEMPTS} tried" in raised.value.message
    assert sum(c.request.method == "POST" for c in mocked.calls) == MAX_ORDER_ATTEMPTS


def test_it_the_base_url_is_configurable(mocked, settings):
    settings.TELNYX_API_URL = "http://localhost:9/x"
    mocked.get("http://localhost:9/x/available_phone_numbers", json=_available(NUMBERS[0]))
    mocked.post("http://localhost:9/x/number_orders", json=_order(NUMBERS[0]))
    plugin.create(instance_id="abc")
    assert mocked.calls[0].request.url.startswith("http://localhost:9/x/available_phone_numbers?")
    assert mocked.calls[1].request.url == "http://localhost:9/x/number_orders"


def test_it_retries_429_and_5xx_and_timeouts_on_the_search(mocked, slept):
    mocked.get(f"{BASE}/available_phone_numbers", status=429, headers={"Retry-After": "4"})
    mocked.get(f"{BASE}/available_phone_numbers", status=500)
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(NUMBERS[0]))
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[0]))
    assert plugin.create(instance_id="abc").resource_id == NUMBERS[0]
    assert slept[0] == 4.0 and len(slept) == 2
    mocked.get(f"{BASE}/available_phone_numbers", body=requests.ReadTimeout())
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(NUMBERS[0]))
    mocked.post(f"{BASE}/number_orders", json=_order(NUMBERS[0]))
    assert plugin.create(instance_id="abc").resource_id == NUMBERS[0]


def test_it_a_5xx_or_timeout_on_the_order_is_not_retried_because_it_may_have_bought_the_number(mocked, slept):
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(*NUMBERS))
    mocked.post(f"{BASE}/number_orders", status=500)
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is False and len(mocked.calls) == 2
    mocked.get(f"{BASE}/available_phone_numbers", json=_available(*NUMBERS))
    mocked.post(f"{BASE}/number_orders", body=requests.ReadTimeout())
    with pytest.raises(ProviderError, match="timed out"):
        plugin.create(instance_id="abc")
    assert len(mocked.calls) == 4


def test_it_a_malformed_answer_is_an_error(mocked):
    mocked.get(f"{BASE}/available_phone_numbers", json={"errors": []})
    with pytest.raises(ProviderError, match="malformed response"):
        plugin.create(instance_id="abc")
    mocked.get(f"{BASE}/available_phone_numbers", body="<<<")
    with pytest.raises(ProviderError, match="malformed response"):
        plugin.create(instance_id="abc")


def test_it_401_is_permanent_and_does_not_leak_the_key(mocked):
    mocked.get(f"{BASE}/available_phone_numbers", status=401,
               json={"errors": [{"code": "10009", "title": "Authentication failed", "detail": f"Key {KEY} is invalid"}]})
    with pytest.raises(ProviderError) as raised:
        plugin.create(instance_id="abc")
    assert raised.value.permanent is True and KEY not in raised.value.message and "HTTP 401" in raised.value.message


def test_it_destroy_resolves_the_number_then_deletes_it(mocked, slept):
    mocked.get(f"{BASE}/phone_numbers", json={"data": [{"id": "1293384261075731499", "phone_number": NUMBERS[0]}]})
    mocked.delete(f"{BASE}/phone_numbers/1293384261075731499", status=503)
    mocked.delete(f"{BASE}/phone_numbers/1293384261075731499", json={"data": {"status": "deleted"}})
    plugin.destroy(resource_id=NUMBERS[0])
    _assert_call(mocked.calls[0], "GET", "/phone_numbers", [("filter[phone_number]", NUMBERS[0])])
    _assert_call(mocked.calls[2], "DELETE", "/phone_numbers/1293384261075731499")


def test_it_destroy_of_a_missing_number_is_done(mocked):
    mocked.get(f"{BASE}/phone_numbers", json={"data": []})
    plugin.destroy(resource_id=NUMBERS[0])
    assert len(mocked.calls) == 1
    mocked.delete(f"{BASE}/phone_numbers/1293384261075731499", status=404)
    plugin.destroy(resource_id="1293384261075731499")  # a Telnyx id is deleted directly


def test_it_is_disabled_without_a_key(settings):
    assert plugin.enabled() == (True, "")
    settings.TELNYX_API_KEY = ""
    assert plugin.enabled() == (False, "TELNYX_API_KEY is not set")


def test_it_user_mode_injects_the_users_credentials():
    assert plugin.user_env_vars({"telnyxApiKey": "KEYuser", "telnyxPhoneNumber": "+14155550100"}) == {
        "TELNYX_API_KEY": "KEYuser", "TELNYX_PHONE_NUMBER": "+14155550100"}
    assert plugin.user_env_vars({"telnyxApiKey": "KEYuser", "telnyxPhone": "+14155550100", "telnyxMessagingProfileId": "mp"}) == {
        "TELNYX_API_KEY": "KEYuser", "TELNYX_PHONE_NUMBER": "+14155550100", "TELNYX_MESSAGING_PROFILE_ID": "mp"}


@pytest.mark.parametrize(
    ("user_config", "message"),
    [
        ({"telnyxPhoneNumber": "+14155550100"}, "sms: userConfig.telnyxApiKey is required"),
        ({"telnyxApiKey": "KEYsecret"}, "sms: userConfig.telnyxPhoneNumber is required"),
        ({"telnyxApiKey": "KEYsecret", "telnyxPhoneNumber": "4155550100"}, "sms: userConfig.telnyxPhoneNumber must be an E.164 number: + then 7 to 15 digits"),
        ({"telnyxApiKey": "KEYsecret", "telnyxPhoneNumber": "+1-415-555"}, "sms: userConfig.telnyxPhoneNumber must be an E.164 number: + then 7 to 15 digits"),
        ({"telnyxApiKey": "KEY secret", "telnyxPhoneNumber": "+14155550100"}, "sms: userConfig.telnyxApiKey is malformed"),
        ("not an object", "sms: userConfig must be an object"),
    ],
)
def test_it_user_mode_errors_name_the_field_not_the_value(user_config, message):
    with pytest.raises(ProviderError) as raised:
        plugin.user_env_vars(user_config)
    assert raised.value.permanent is True and raised.value.message == message
    assert "secret" not in raised.value.message
