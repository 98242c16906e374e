"""Railway's rate limits shared by every process through Redis (services_app/providers/rate_limit.py),
against the real Redis of REDIS_URL. Each test uses keys of its own, so parallel runs never meet.
Waits are read from reservations, never slept."""
from __future__ import annotations

import os
import secrets
import time
import uuid

import pytest
import redis
import responses

from services_app.providers import rate_limit
from services_app.providers.rate_limit import CreateSpacer, RedisCreateSpacer, RedisTokenBucket, TokenBucket
from services_app.providers.railway_client import RailwayClient, shared_client

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused


@pytest.fixture
def prefix():
    """A key prefix of this test's own; its keys are removed afterwards."""
    value = f"{rate_limit.KEY_PREFIX}test:{uuid.uuid4().hex}:"
    yield value
    connection = redis.Redis.from_url(REDIS_URL)
    keys = list(connection.scan_iter(match=f"{value}*"))
    if keys:
        connection.delete(*keys)


@pytest.fixture
def connection():
    connection = rate_limit.redis_connection(REDIS_URL)
    connection.ping()
    return connection


def fixed_clock(at: float = 1_000.0):
    return lambda: at


def test_it_shares_one_token_bucket_between_two_processes(connection, prefix):
    # Two limiter objects on one key stand for two processes.
    first, second = (RedisTokenBucket(connection, 1.0, 5, key=f"{prefix}bucket", clock=fixed_clock()) for _ in range(2))
    waits = [(first if n % 2 else second).reserve() for n in range(10)]
    single = TokenBucket(1.0, 5, clock=fixed_clock())
    assert waits == [single.reserve() for _ in range(10)] == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]
    assert sum(waits) == 15


def test_it_refills_the_shared_bucket_on_redis_time(connection, prefix):
    first, second = (RedisTokenBucket(connection, 1.0, 5, key=f"{prefix}bucket") for _ in range(2))
    started = time.monotonic()
    waits = [(first if n % 2 else second).reserve() for n in range(10)]
    elapsed = time.monotonic() - started
    assert waits[:5] == [0, 0, 0, 0, 0]
    # Debt queues up across both objects: the tenth waits about five seconds, less what refilled.
    assert 5 - elapsed - 0.01 <= waits[-1] <= 5
    assert waits == sorted(waits)


def test_it_refills_at_the_rate_between_reservations(connection, prefix):
    now = [1_000.0]
    bucket = RedisTokenBucket(connection, 2.0, 2, key=f"{prefix}bucket", clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 0.5]
    now[0] += 10  # long idle: full again, never more than the burst
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 0.5]


def test_it_spaces_project_creates_per_token_across_two_processes(connection, prefix):
    tokens = [secrets.token_hex(12), secrets.token_hex(12)]
    first, second = (RedisCreateSpacer(connection, tokens, 30.0, key=f"{prefix}create_spacer", clock=fixed_clock()) for _ in range(2))
    shared = [first.reserve(), second.reserve(), second.reserve(), first.reserve(), first.reserve(tokens[1])]
    single = CreateSpacer(tokens, 30.0, clock=fixed_clock())
    expected = [single.reserve(), single.reserve(), single.reserve(), single.reserve(), single.reserve(tokens[1])]
    assert shared == expected
    assert shared == [(tokens[0], 0), (tokens[1], 0), (tokens[0], 30), (tokens[1], 30), (tokens[1], 60)]
    stored = b" ".join(k + b" " + b" ".join(connection.hkeys(k)) for k in connection.scan_iter(match=f"{prefix}*"))
    assert all(token.encode() not in stored for token in tokens)  # Redis never holds a token


def test_it_spaces_creates_on_redis_s_own_clock(connection, prefix):
    token = secrets.token_hex(12)
    first, second = (RedisCreateSpacer(connection, [token], 30.0, key=f"{prefix}create_spacer") for _ in range(2))
    (_, now_wait), (_, next_wait) = first.reserve(), second.reserve()
    assert now_wait == 0
    assert 29 < next_wait <= 30  # the second waits a whole interval, less the instant between the calls


def test_it_falls_back_to_the_process_limiter_when_redis_is_down(monkeypatch, prefix):
    warnings: list[str] = []
    monkeypatch.setattr(rate_limit.logger, "warning", lambda message, *args: warnings.append(message % args))
    down = rate_limit.redis_connection(CLOSED_PORT_URL)
    bucket = RedisTokenBucket(down, 1.0, 2, key=f"{prefix}bucket", clock=fixed_clock())
    spacer = RedisCreateSpacer(down, [secrets.token_hex(8)], 30.0, key=f"{prefix}create_spacer", clock=fixed_clock())
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 1]  # the in-process bucket's answers
    assert [spacer.reserve()[1] for _ in range(2)] == [0, 30]
    assert len(warnings) == 2 and "Redis unreachable" in warnings[0]  # once per limiter, not per call


def test_it_sends_railway_calls_while_redis_is_down(prefix):
    token = secrets.token_hex(16)
    api = f"https://railway-{uuid.uuid4().hex[:8]}.test/graphql/v2"
    client = shared_client(api, [token], rps=40.0, create_interval_s=30.0, timeout_s=5.0, max_retries=0,
                           redis_url=CLOSED_PORT_URL, key_prefix=prefix)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, api, json={"data": {"projectDelete": True}})
        assert client.execute("mutation ProjectDelete($id: String!) { projectDelete(id: $id) }", {"id": "p"}) == {"projectDelete": True}
        assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {token}"


def test_it_picks_the_shared_limiters_only_with_a_redis_url(prefix):
    token = secrets.token_hex(16)
    api = f"https://railway-{uuid.uuid4().hex[:8]}.test/graphql/v2"
    options = dict(rps=40.0, create_interval_s=30.0, timeout_s=5.0, max_retries=0)
    shared = shared_client(api, [token], **options, redis_url=REDIS_URL, key_prefix=prefix)
    local = shared_client(api, [token], **options)
    assert isinstance(shared._bucket, RedisTokenBucket) and isinstance(shared._spacer, RedisCreateSpacer)
    assert shared._bucket.key.startswith(prefix) and token not in shared._bucket.key
    assert isinstance(local._bucket, TokenBucket) and isinstance(local._spacer, CreateSpacer)
    assert shared_client(api, [token], **options, redis_url=REDIS_URL, key_prefix=prefix) is shared
    assert isinstance(RailwayClient(api, [token], **options)._bucket, TokenBucket)
