"""Transitions in bulk: a wave of thousands of moves is a bounded number of statements, and every
move is still conditional (a concurrent claim wins) and still recorded in the event log."""
from __future__ import annotations

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from pool_app import transitions
from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import pool_tick
from pool_app.services import tick as tick_module
from pool_app.transitions import transition, transition_many
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0  # no top-up: the tick only observes
    settings.POOL_MAX_TOTAL = 5000
    settings.POOL_IDLE_AUDIT_SAMPLE = 0
    return FakeServices().install(monkeypatch)


def _starting_fleet(fake: FakeServices, n: int) -> list[str]:
    rows = Instance.objects.bulk_create(Instance(status=S.STARTING, deploy_status="deploying") for _ in range(n))
    for row in rows:
        fake.create_instance(row.pk)
    fake.calls.clear()
    return [row.pk for row in rows]


def _pool_statements(fake: FakeServices, n: int) -> int:
    _starting_fleet(fake, n)
    with CaptureQueriesContext(connections["pool"]) as queries:
        report = pool_tick()
    assert report["steps"]["observe"]["transitions"] == n and not report["errors"]
    Instance.objects.all().delete()
    return len(queries)


def test_it_moves_many_and_records_one_event_per_move(monkeypatch):
    monkeypatch.setattr(transitions, "BULK_CHUNK", 3)
    ids = [Instance.objects.create(status=S.STARTING).pk for _ in range(7)]
    with CaptureQueriesContext(connections["pool"]) as queries:
        moved = transition_many(ids, from_status=S.STARTING, to_status=S.IDLE, actor="tick", reason="healthy")
    assert sorted(moved) == sorted(ids)
    assert set(Instance.objects.values_list("status", flat=True)) == {S.IDLE}
    assert InstanceEvent.objects.filter(from_status=S.STARTING, to_status=S.IDLE, reason="healthy").count() == 7
    updates = [q["sql"] for q in queries.captured_queries if "UPDATE instances SET" in q["sql"]]
    assert len(updates) == 3  # ceil(7 / 3) conditional updates, not one per instance


def test_it_leaves_alone_a_row_another_process_moved_first():
    ids = [Instance.objects.create(status=S.STARTING).pk for _ in range(4)]
    transition(ids[1], from_status=S.STARTING, to_status=S.DEAD, actor="operator", reason="destroyed by hand")
    moved = transition_many(ids, from_status=S.STARTING, to_status=S.IDLE, actor="tick", reason="healthy")
    assert sorted(moved) == sorted(ids[:1] + ids[2:])
    assert Instance.objects.get(pk=ids[1]).status == S.DEAD
    assert not InstanceEvent.objects.filter(instance_id=ids[1], to_status=S.IDLE).exists()


def test_it_refuses_a_move_to_the_same_status():
    with pytest.raises(ValueError):
        transition_many(["x"], from_status=S.IDLE, to_status=S.IDLE, actor="tick", reason="nothing")


def test_it_loses_to_a_claim_that_lands_between_the_tick_reading_and_writing(fake, monkeypatch):
    """The tick read `idle`; a claim moves one instance before the tick writes: the claim keeps it."""
    ids = _starting_fleet(fake, 5)
    claimed = ids[2]
    original = fake.status_batch

    def batch_during_a_claim(instance_ids):
        answer = original(instance_ids)
        transition(claimed, from_status=S.STARTING, to_status=S.CLAIMING, actor="api", reason="claim started")
        return answer

    monkeypatch.setattr(tick_module.services, "status_batch", batch_during_a_claim)
    report = pool_tick()
    assert report["steps"]["observe"]["transitions"] == 4
    assert Instance.objects.get(pk=claimed).status == S.CLAIMING
    assert Instance.objects.filter(status=S.IDLE).count() == 4
    assert not InstanceEvent.objects.filter(instance_id=claimed, actor="tick").exists()


def test_it_writes_a_wave_of_starting_to_idle_in_a_bounded_number_of_statements(fake, monkeypatch):
    monkeypatch.setattr(transitions, "BULK_CHUNK", 50)
    monkeypatch.setattr(tick_module, "BULK_CHUNK", 50)
    small, large = _pool_statements(fake, 10), _pool_statements(fake, 240)
    # 240 moves are 5 chunks where 10 are 1: each extra chunk costs its conditional UPDATE, its
    # event INSERT, the savepoint pair of its transaction and its share of the URL update: never a
    # statement per instance.
    per_chunk = (large - small) / 4
    assert per_chunk <= 5, (small, large)
    assert InstanceEvent.objects.filter(from_status=S.STARTING, to_status=S.IDLE, actor="tick").count() == 250
