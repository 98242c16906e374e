"""RailwayClient: the outgoing request, retries, rate limits and errors, with a fake clock."""
from __future__ import annotations

import json

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from services_app.providers.base import ProviderError
from services_app.providers.railway_client import RailwayClient, RailwayError
from services_app.providers.railway_documents import PROJECT_CREATE, PROJECT_DELETE
from services_app.providers.rate_limit import CreateSpacer, TokenBucket
from tests.services_app.conftest import FakeClock

API = "https://railway.test/graphql/v2"
CREATE_VARS = {"input": {"name": "convos-agent-x", "workspaceId": "ws-1"}}
OK_CREATE = {"data": {"projectCreate": {"id": "p1", "name": "convos-agent-x", "environments": {"edges": []}}}}


def make_client(clock: FakeClock, tokens=("tok-a",), *, rps: float = 1000.0, max_retries: int = 2) -> RailwayClient:
    return RailwayClient(
        API, list(tokens), rps=rps, create_interval_s=30.0, timeout_s=5.0, max_retries=max_retries,
        sleep=clock.sleep, clock=clock, jitter=lambda: 0.5,
    )


def sent(call) -> dict:
    return json.loads(call.request.body)


def bearer(call) -> str:
    return call.request.headers["Authorization"]


def test_it_posts_the_named_operation_with_bearer_auth_and_returns_data(clock, rsps):
    rsps.add(responses.POST, API, json={"data": {"projectDelete": True}})
    assert make_client(clock).execute(PROJECT_DELETE, {"id": "p1"}) == {"projectDelete": True}
    (call,) = rsps.calls
    assert call.request.method == "POST" and call.request.url == API
    assert bearer(call) == "Bearer tok-a"
    assert call.request.headers["Content-Type"] == "application/json"
    assert sent(call) == {"query": PROJECT_DELETE, "variables": {"id": "p1"}, "operationName": "ProjectDelete"}
    assert clock.sleeps == []


def test_it_honours_retry_after_on_429_then_succeeds(clock, rsps):
    rsps.add(responses.POST, API, status=429, headers={"Retry-After": "7"}, json={"message": "slow down"})
    rsps.add(responses.POST, API, json={"data": {"projectDelete": True}})
    assert make_client(clock).execute(PROJECT_DELETE, {"id": "p1"}) == {"projectDelete": True}
    assert len(rsps.calls) == 2
    assert clock.sleeps == [7.0]


def test_it_retries_a_server_error_with_backoff_then_succeeds(clock, rsps):
    rsps.add(responses.POST, API, status=502, body="bad gateway")
    rsps.add(responses.POST, API, json={"data": {"projectDelete": True}})
    assert make_client(clock).execute(PROJECT_DELETE, {"id": "p1"}) == {"projectDelete": True}
    assert len(rsps.calls) == 2
    assert clock.sleeps == [pytest.approx(0.375)]  # first back-off: 0.5 s ceiling, jitter 0.5 -> 0.375


def test_it_gives_up_on_timeouts_after_max_retries_with_a_transient_error(clock, rsps):
    for _ in range(3):
        rsps.add(responses.POST, API, body=requests.Timeout())
    with pytest.raises(ProviderError) as failed:
        make_client(clock, max_retries=2).execute(PROJECT_DELETE, {"id": "p1"})
    assert failed.value.permanent is False
    assert "ProjectDelete" in failed.value.message and "3 attempts" in failed.value.message
    assert len(rsps.calls) == 3
    assert len(clock.sleeps) == 2 and clock.sleeps[1] > clock.sleeps[0]  # exponential


def test_it_does_not_retry_an_ambiguous_project_create(clock, rsps):
    rsps.add(responses.POST, API, status=500, body="oops")
    with pytest.raises(RailwayError) as failed:
        make_client(clock).execute(PROJECT_CREATE, CREATE_VARS)
    assert failed.value.maybe_applied and failed.value.permanent is False
    assert len(rsps.calls) == 1


def test_it_retries_a_project_create_that_never_reached_railway(clock, rsps):
    refused = requests.ConnectionError(MaxRetryError(None, API, NewConnectionError(None, "refused")))
    rsps.add(responses.POST, API, body=refused)
    rsps.add(responses.POST, API, json=OK_CREATE)
    assert make_client(clock).execute(PROJECT_CREATE, CREATE_VARS) == OK_CREATE["data"]
    assert len(rsps.calls) == 2
    # The back-off, then the rest of the token's create spacing: a retried create still counts.
    assert clock.sleeps == [pytest.approx(0.375), pytest.approx(29.625)]


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", json.dumps({"result": 1}), json.dumps({"data": None})])
def test_it_reports_a_malformed_answer_as_transient(clock, rsps, body):
    rsps.add(responses.POST, API, body=body, content_type="application/json")
    with pytest.raises(ProviderError) as failed:
        make_client(clock).execute(PROJECT_DELETE, {"id": "p1"})
    assert failed.value.permanent is False and "malformed" in failed.value.message
    assert len(rsps.calls) == 1


def test_it_raises_graphql_errors_as_permanent_with_the_first_message(clock, rsps):
    rsps.add(responses.POST, API, json={"errors": [{"message": "Problem with input"}, {"message": "second"}], "data": None})
    with pytest.raises(ProviderError) as failed:
        make_client(clock).execute(PROJECT_DELETE, {"id": "p1"})
    assert failed.value.permanent is True
    assert failed.value.message == "Railway ProjectDelete: Problem with input"
    assert len(rsps.calls) == 1


def test_it_retries_graphql_rate_limit_errors(clock, rsps):
    rsps.add(responses.POST, API, json={"errors": [{"message": "Rate limit exceeded"}]})
    rsps.add(responses.POST, API, json={"data": {"projectDelete": True}})
    assert make_client(clock).execute(PROJECT_DELETE, {"id": "p1"}) == {"projectDelete": True}
    assert len(rsps.calls) == 2 and len(clock.sleeps) == 1


def test_it_treats_other_client_errors_as_permanent(clock, rsps):
    rsps.add(responses.POST, API, status=401, json={"errors": [{"message": "Not Authorized"}]})
    with pytest.raises(ProviderError) as failed:
        make_client(clock).execute(PROJECT_DELETE, {"id": "p1"})
    assert failed.value.permanent is True and "Not Authorized" in failed.value.message
    assert len(rsps.calls) == 1


def test_it_rotates_tokens_round_robin(clock, rsps):
    rsps.add(responses.POST, API, json={"data": {"projectDelete": True}})
    client = make_client(clock, tokens=("tok-a", "tok-b", "tok-c"))
    for _ in range(4):
        client.execute(PROJECT_DELETE, {"id": "p1"})
    assert [bearer(c) for c in rsps.calls] == ["Bearer tok-a", "Bearer tok-b", "Bearer tok-c", "Bearer tok-a"]
    client.execute(PROJECT_DELETE, {"id": "p1"}, token="tok-z")
    assert bearer(rsps.calls[-1]) == "Bearer tok-z"


def test_it_spaces_project_creates_on_one_token(clock, rsps):
    rsps.add(responses.POST, API, json=OK_CREATE)
    client = make_client(clock)
    client.execute(PROJECT_CREATE, CREATE_VARS)
    client.execute(PROJECT_DELETE, {"id": "p1"})  # other calls are not spaced
    client.execute(PROJECT_CREATE, CREATE_VARS)
    assert clock.sleeps == [30.0]
    assert [bearer(c) for c in rsps.calls] == ["Bearer tok-a"] * 3


def test_it_rotates_project_creates_across_tokens_without_waiting(clock, rsps):
    rsps.add(responses.POST, API, json=OK_CREATE)
    client = make_client(clock, tokens=("tok-a", "tok-b"))
    client.execute(PROJECT_CREATE, CREATE_VARS)
    client.execute(PROJECT_CREATE, CREATE_VARS)
    assert clock.sleeps == []
    assert [bearer(c) for c in rsps.calls] == ["Bearer tok-a", "Bearer tok-b"]
    client.execute(PROJECT_CREATE, CREATE_VARS)  # both used: the one free first (tok-a) after 30 s
    assert clock.sleeps == [30.0] and bearer(rsps.calls[-1]) == "Bearer tok-a"


def test_it_never_puts_the_token_in_an_error_message(clock, rsps):
    token = "rw-secret-token-123456"
    rsps.add(responses.POST, API, status=403, json={"errors": [{"message": f"Bearer {token} is not allowed"}]})
    rsps.add(responses.POST, API, json={"errors": [{"message": f"token {token} expired"}]})
    rsps.add(responses.POST, API, status=503, body=f"upstream rejected {token}")
    client = make_client(clock, tokens=(token,), max_retries=0)
    for _ in range(3):
        with pytest.raises(ProviderError) as failed:
            client.execute(PROJECT_DELETE, {"id": "p1"})
        assert token not in failed.value.message and token not in str(failed.value)
    assert all(bearer(c) == f"Bearer {token}" for c in rsps.calls)


def test_it_paces_requests_to_the_configured_rate(clock, rsps):
    rsps.add(responses.POST, API, json={"data": {"projectDelete": True}})
    client = make_client(clock, rps=4.0)  # burst max(1, 4/4) = 1
    for _ in range(3):
        client.execute(PROJECT_DELETE, {"id": "p1"})
    assert clock.sleeps == [pytest.approx(0.25), pytest.approx(0.25)]


def test_it_refills_the_token_bucket_over_time(clock):
    bucket = TokenBucket(10, 2, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0, 0, pytest.approx(0.1)]
    clock.now += 1.0
    assert bucket.acquire() == 0


def test_it_queues_concurrent_create_reservations_on_one_token(clock):
    spacer = CreateSpacer(["a"], 30, clock=clock, sleep=clock.sleep)
    assert [spacer.reserve() for _ in range(3)] == [("a", 0), ("a", 30.0), ("a", 60.0)]
