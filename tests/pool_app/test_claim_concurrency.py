"""Concurrent claims on PostgreSQL: every idle instance is handed out once, and only once.

`_reserve_idle_instance` relies on `SELECT ... FOR UPDATE SKIP LOCKED` plus the conditional
update in `transition`. These tests race many claimers at the same moment against fewer idle
instances and check that nobody gets an instance twice and the losers get a clean 503.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections
from rest_framework.test import APIClient

from convos.errors import Unavailable
from pool_app.models import Instance, InstanceEvent, InstanceStatus
from pool_app.services import ClaimResult, instance_claim, instance_destroy, pool_tick
from pool_app.services.claim import claim_spec
from tests.conftest import ALL_DATABASES, wait_until

# Claimers on threads of their own, each with its connection and its row locks: the rows must be committed.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]

IDLE = 10
CLAIMERS = 20
CLAIM = "/api/pool/claim"


def _count(status: str) -> int:
    return Instance.objects.filter(status=status).count()


def _race(fn, n: int) -> list[Any]:
    """Run `fn(i)` on `n` threads released together by a barrier; returns results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        try:
            barrier.wait(timeout=30)
            return fn(i)
        except Exception as exc:  # returned, not raised: the test inspects every outcome
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as executor:
        return list(executor.map(run, range(n)))


def _claiming_events_per_instance() -> Counter:
    return Counter(InstanceEvent.objects.filter(to_status=InstanceStatus.CLAIMING).values_list("instance_id", flat=True))


@pytest.mark.e2e
def test_it_hands_each_idle_instance_to_exactly_one_of_many_concurrent_api_claims(
    postgres_only, local_instances: Path, settings
):
    settings.POOL_MIN_IDLE = IDLE
    try:
        wait_until(lambda: pool_tick() and _count(InstanceStatus.IDLE) >= IDLE, timeout=60, interval=0.2, message=f"{IDLE} idle")
        assert _count(InstanceStatus.IDLE) == IDLE

        def claim(i: int):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}")
            return client.post(CLAIM, {"agentName": f"Racer {i}", "instructions": f"Racer number {i}."}, format="json")

        responses = _race(claim, CLAIMERS)

        errors = [r for r in responses if isinstance(r, Exception)]
        assert errors == [], errors
        by_status = Counter(r.status_code for r in responses)
        assert by_status == {200: IDLE, 503: CLAIMERS - IDLE}, {r.status_code: r.content[:300] for r in responses}

        won = [r.json() for r in responses if r.status_code == 200]
        assert len({w["instanceId"] for w in won}) == IDLE
        assert len({w["conversationId"] for w in won}) == IDLE
        assert all(w["conversationId"] for w in won)
        for lost in (r for r in responses if r.status_code == 503):
            body = lost.json()
            assert "no idle instance" in body["error"].lower(), body
            assert body["code"] == "no_idle_instance"

        claimed = set(Instance.objects.filter(status=InstanceStatus.CLAIMED).values_list("pk", flat=True))
        assert claimed == {w["instanceId"] for w in won}
        assert _count(InstanceStatus.CLAIMING) == 0 and _count(InstanceStatus.IDLE) == 0
        # Each instance was reserved (idle -> claiming) once: no claim ever took a reserved one.
        assert _claiming_events_per_instance() == Counter({instance_id: 1 for instance_id in claimed})
        # Each winner got the instance that recorded its own name.
        for w in won:
            assert Instance.objects.get(pk=w["instanceId"]).agent_name == w["agentName"]
    finally:
        for instance_id in Instance.objects.exclude(status=InstanceStatus.DELETED).values_list("pk", flat=True):
            instance_destroy(instance_id=instance_id, actor="cli", reason="test teardown")


def test_it_configures_each_idle_instance_once_when_claims_race_in_the_service(postgres_only, monkeypatch):
    rows = [Instance.objects.create(status=InstanceStatus.IDLE, url="http://127.0.0.1:9") for _ in range(IDLE)]
    configured: list[str] = []
    lock = threading.Lock()

    def fake_configure(instance_id: str, *, agent_name: str, instructions: str, join_url: str | None = None, **_: Any):
        time.sleep(0.05)  # long enough that every other claimer reserves while this one provisions
        with lock:
            configured.append(instance_id)
        conversation_id = uuid.uuid4().hex
        return {"ok": True, "conversationId": conversation_id, "inviteUrl": f"https://dev.convos.org/v2?i={conversation_id}",
                "joined": False, "status": "created"}

    monkeypatch.setattr("pool_app.services.claim.services.configure", fake_configure)

    outcomes = _race(lambda i: instance_claim(spec=claim_spec(agent_name=f"Racer {i}", instructions="x"), actor="cli"), CLAIMERS)

    results = [o for o in outcomes if isinstance(o, ClaimResult)]
    unavailable = [o for o in outcomes if isinstance(o, Unavailable)]
    others = [o for o in outcomes if not isinstance(o, (ClaimResult, Unavailable))]
    assert others == [], others
    assert len(results) == IDLE and len(unavailable) == CLAIMERS - IDLE
    assert all(e.code == "no_idle_instance" for e in unavailable)

    ids = {row.pk for row in rows}
    assert Counter(configured) == Counter({instance_id: 1 for instance_id in ids})
    assert {r.instance_id for r in results} == ids
    assert set(Instance.objects.filter(status=InstanceStatus.CLAIMED).values_list("pk", flat=True)) == ids
    assert _claiming_events_per_instance() == Counter({instance_id: 1 for instance_id in ids})
