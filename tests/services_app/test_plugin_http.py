"""The plugins' shared HTTP helper: auth, retries, back-off and error messages safe to log."""
from __future__ import annotations

import json

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from services_app.plugins import http
from services_app.plugins.http import ProviderHttpError, request_json, scrub, user_value
from services_app.providers.base import ProviderError

URL = "https://api.example.test/v1/things"
KEY = "sk-test-0123456789abcdefABCDEF"


def test_it_sends_bearer_auth_json_and_the_configured_timeout(mocked, slept, settings):
    settings.PROVIDER_TIMEOUT_S = 7.5
    mocked.post(URL, json={"ok": True}, status=201)
    assert request_json("POST", URL, api_key=KEY, json={"a": 1}, provider="Example") == {"ok": True}
    call = mocked.calls[0]
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(call.request.body) == {"a": 1}
    assert call.request.req_kwargs["timeout"] == 7.5
    assert slept == []


def test_it_returns_an_empty_dict_for_204(mocked, slept):
    mocked.delete(URL, status=204)
    assert request_json("DELETE", URL, api_key=KEY) == {}


def test_it_honours_retry_after_on_429_even_for_a_create(mocked, slept):
    mocked.post(URL, status=429, headers={"Retry-After": "3"}, json={"error": {"message": "slow down"}})
    mocked.post(URL, json={"id": "x"})
    assert request_json("POST", URL, api_key=KEY) == {"id": "x"}
    assert slept == [3.0]
    assert len(mocked.calls) == 2


def test_it_hands_a_long_retry_after_back_to_the_caller(mocked, slept):
    mocked.get(URL, status=429, headers={"Retry-After": "120"})
    with pytest.raises(ProviderHttpError) as raised:
        request_json("GET", URL, api_key=KEY)
    assert raised.value.permanent is False and raised.value.retry_after == 120.0 and raised.value.status_code == 429
    assert slept == [] and len(mocked.calls) == 1


def test_it_retries_5xx_with_jittered_growing_backoff_then_gives_up(mocked, slept):
    for _ in range(3):
        mocked.get(URL, status=503)
    with pytest.raises(ProviderHttpError) as raised:
        request_json("GET", URL, api_key=KEY, retries=2, provider="Example")
    assert raised.value.permanent is False and raised.value.status_code == 503
    assert str(raised.value) == "Example: GET /v1/things answered HTTP 503"
    assert len(mocked.calls) == 3 and len(slept) == 2
    assert 0.25 <= slept[0] <= 0.5 and 0.5 <= slept[1] <= 1.0


def test_it_does_not_retry_a_5xx_on_a_create_that_may_have_happened(mocked, slept):
    mocked.post(URL, status=500)
    with pytest.raises(ProviderHttpError) as raised:
        request_json("POST", URL, api_key=KEY)
    assert raised.value.permanent is False
    assert len(mocked.calls) == 1 and slept == []


def test_it_retries_a_create_marked_idempotent(mocked, slept):
    mocked.post(URL, status=502)
    mocked.post(URL, json={"ok": 1})
    assert request_json("POST", URL, api_key=KEY, idempotent=True) == {"ok": 1}


def test_it_retries_a_read_timeout_only_when_idempotent(mocked, slept, settings):
    settings.PROVIDER_TIMEOUT_S = 4
    mocked.get(URL, body=requests.ReadTimeout())
    mocked.get(URL, json={"ok": 1})
    assert request_json("GET", URL, api_key=KEY) == {"ok": 1}

    mocked.post(URL, body=requests.ReadTimeout())
    with pytest.raises(ProviderHttpError) as raised:
        request_json("POST", URL, api_key=KEY, provider="Example")
    assert str(raised.value) == "Example: POST /v1/things timed out after 4s"
    assert raised.value.permanent is False and raised.value.status_code is None


def test_it_retries_a_create_that_never_left(mocked, slept):
    mocked.post(URL, body=requests.ConnectTimeout())
    refused = requests.ConnectionError(MaxRetryError(None, URL, NewConnectionError(None, "refused")))
    mocked.post(URL, body=refused)
    mocked.post(URL, json={"ok": 1})
    assert request_json("POST", URL, api_key=KEY) == {"ok": 1}
    assert len(slept) == 2


def test_it_gives_up_on_timeouts_after_the_retries(mocked, slept):
    for _ in range(2):
        mocked.get(URL, body=requests.ConnectTimeout())
    with pytest.raises(ProviderHttpError) as raised:
        request_json("GET", URL, api_key=KEY, retries=1)
    assert raised.value.permanent is False and "timed out" in raised.value.message


def test_it_a_4xx_is_permanent_and_not_retried(mocked, slept):
    mocked.post(URL, status=422, json={"errors": [{"title": "Invalid", "detail": "number is not available"}]})
    with pytest.raises(ProviderHttpError) as raised:
        request_json("POST", URL, api_key=KEY, provider="Telnyx")
    assert raised.value.permanent is True and raised.value.status_code == 422
    assert raised.value.message == "Telnyx: POST /v1/things answered HTTP 422: number is not available"
    assert len(mocked.calls) == 1


def test_it_an_error_never_carries_the_key_even_when_the_provider_echoes_it(mocked, slept):
    mocked.get(URL, status=401, json={"error": {"message": f"Invalid key {KEY} (am_9f8e7d6c5b4a39281716abcdef)"}})
    with pytest.raises(ProviderHttpError) as raised:
        request_json("GET", URL, api_key=KEY, provider="Example")
    assert raised.value.permanent is True
    assert KEY not in str(raised.value) and "am_9f8e7d6c5b4a" not in str(raised.value)
    assert str(raised.value).startswith("Example: GET /v1/things answered HTTP 401: Invalid key [redacted]")


def test_it_an_error_quotes_no_body_beyond_a_known_message_field(mocked, slept):
    mocked.get(URL, status=400, body="<html>stack trace with secrets</html>")
    with pytest.raises(ProviderHttpError) as raised:
        request_json("GET", URL, api_key=KEY, provider="Example")
    assert str(raised.value) == "Example: GET /v1/things answered HTTP 400"


def test_it_a_malformed_success_body_is_a_transient_error(mocked, slept):
    mocked.get(URL, body="not json", status=200)
    with pytest.raises(ProviderError) as raised:
        request_json("GET", URL, api_key=KEY, provider="Example")
    assert raised.value.permanent is False and "malformed response" in raised.value.message


def test_it_scrub_keeps_uuids_and_caps_length():
    uuid = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    assert scrub(f"profile {uuid} missing") == f"profile {uuid} missing"
    assert len(scrub("x " * 500)) <= http.MAX_MESSAGE_CHARS + 1


def test_it_user_value_names_the_field_never_the_value():
    with pytest.raises(ProviderError) as raised:
        user_value({"k": "sec ret-value"}, "k", tool="sms")
    assert raised.value.permanent and raised.value.message == "sms: userConfig.k is malformed"
    with pytest.raises(ProviderError, match=r"userConfig.k is required"):
        user_value({}, "k", tool="sms")
    with pytest.raises(ProviderError, match=r"userConfig must be an object"):
        user_value(["k"], "k", tool="sms")
    assert user_value({"k": "  v  "}, "k", tool="sms") == "v"
