"""Redis going away (issue 11, item 3): claims over the API keep working.

Redis is the cache (API clients' rate limits, the self-provisioning counter) and the Celery broker
(the refill tick a claim enqueues). Both are pointed at a port that refuses connections and at one
that accepts them but never answers (the worse case: without socket timeouts a call waits for
ever). A rate-limited client's claims answer 200 (503 once the pool is empty), never a 500: the
rate limit is not enforced while the cache is down, and the refill enqueue is logged and skipped.
A request that hangs fails the test (SIGALRM), however long the timeouts.
"""
from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from convos.celery import app as celery_app
from pool_app.models import Instance, InstanceStatus as S
from pool_app.services import claim as claim_module
from pool_app.services.api_clients import api_client_create
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
CLAIM = "/api/pool/claim"
REAL_ENQUEUE = claim_module._enqueue_tick  # before conftest's recorder replaces it
HANG_LIMIT_S = 60  # far above the timeouts below: only a request that hangs reaches it


@contextmanager
def _fails_if_it_hangs(seconds: int = HANG_LIMIT_S) -> Iterator[None]:
    def hung(signum, frame):
        raise AssertionError(f"the request was still waiting after {seconds}s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(params=["refused", "silent"])
def dead_redis_url(request) -> Iterator[str]:
    if request.param == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now: connections are refused at once
        yield f"redis://127.0.0.1:{port}/0"
        return
    # Listening with no accept: the kernel completes a handshake or two, then drops SYNs. Redis
    # "answers" neither: reads and connects only end on the client's own timeouts.
    silent = socket.create_server(("127.0.0.1", 0), backlog=0)
    try:
        yield f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    finally:
        silent.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """Warnings of the modules that degrade (a handler of our own: the suite may run without pytest's logging plugin)."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in ("convos.cache", "pool_app.auth", "pool_app.services.claim")]
    for logger in loggers:
        logger.addHandler(handler)
    import convos.cache

    convos.cache._warned_at = 0.0  # the once-per-30-s warning is due again
    yield handler.messages
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def redis_down(dead_redis_url, settings, monkeypatch) -> str:
    settings.REDIS_TIMEOUT_S = 0.5
    settings.CACHES = {"default": {"BACKEND": "convos.cache.FailSoftRedisCache", "LOCATION": dead_redis_url,
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    # The enqueue publishes through the Celery app's broker: the same dead Redis.
    monkeypatch.setattr(celery_app.conf, "broker_write_url", dead_redis_url)
    monkeypatch.setattr(claim_module, "_enqueue_tick", REAL_ENQUEUE)
    return dead_redis_url


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 5  # every claim leaves the pool short: each one enqueues a refill tick
    settings.POOL_REFILL_MIN_INTERVAL_MS = 0  # ...every one, not one per interval
    return FakeServices().install(monkeypatch)


def test_it_claims_with_a_rate_limit_and_a_refill_while_redis_is_down(redis_down, fake, warnings_logged,
                                                                       django_capture_on_commit_callbacks):
    for _ in range(2):
        fake.create_instance(Instance.objects.create(status=S.IDLE, deploy_status="healthy").pk)
    client = APIClient()
    key = api_client_create(name="Limited", owner_id="limited", rate_limit_per_minute=1).key
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    answers = []
    for _ in range(3):  # over the client's 1/min: the limit cannot be counted without the cache
        with _fails_if_it_hangs(), django_capture_on_commit_callbacks(using="pool", execute=True):
            answers.append(client.post(CLAIM, {"agentName": "agent"}, format="json"))

    assert [a.status_code for a in answers] == [200, 200, 503], [a.content[:200] for a in answers]
    assert answers[2].json()["code"] == "no_idle_instance"
    assert any("cache unavailable" in m for m in warnings_logged), warnings_logged
    assert sum("could not enqueue a refill tick" in m for m in warnings_logged) == 2, warnings_logged


def test_it_cache_reads_are_misses_and_writes_are_dropped(redis_down, warnings_logged):
    with _fails_if_it_hangs():
        assert cache.get("k", "default") == "default"
        assert cache.get_many(["a", "b"]) == {}
        cache.set("k", 1)
        assert cache.add("k", 1) is False
        assert cache.delete("k") is False
        with pytest.raises(Exception):
            cache.incr("k")  # a count the caller cannot have: it raises (and the callers catch it)
    assert warnings_logged and "cache unavailable" in warnings_logged[0]
