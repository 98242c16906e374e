"""The tick: single flight, isolated steps, stuck/dead handling, the outage guard, top-up."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from pool_app.config import pool_settings_update
from pool_app.models import Instance, InstanceEvent, InstanceStatus as S, PoolState
from pool_app.services import pool_tick
from pool_app.services import tick as tick_module
from pool_app.single_flight import lease_lock
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 3
    settings.POOL_MAX_TOTAL = 50
    return FakeServices().install(monkeypatch)


def _fleet(fake: FakeServices, n: int, status: str = S.IDLE, **fields) -> list[Instance]:
    rows = []
    for _ in range(n):
        instance = Instance.objects.create(status=status, deploy_status="healthy", **fields)
        fake.create_instance(instance.pk)
        rows.append(instance)
    fake.calls.clear()
    return rows


def _statuses() -> dict[str, int]:
    out: dict[str, int] = {}
    for status in Instance.objects.exclude(status=S.DELETED).values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def test_it_fills_the_pool_and_marks_healthy_instances_idle(fake):
    report = pool_tick()
    assert report["steps"]["top_up"]["created"] == 3 and not report["errors"]
    assert _statuses() == {S.STARTING: 3}
    pool_tick()
    assert _statuses() == {S.IDLE: 3}
    assert fake.calls["status_batch"] == 1  # one batch call per tick, whatever the fleet size
    assert InstanceEvent.objects.filter(to_status=S.IDLE, actor="tick").count() == 3


# Two ticks on two connections: each must see the other's lock and the fleet, so the rows are committed.
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_runs_only_one_tick_at_a_time_across_connections(fake, postgres_only, monkeypatch):
    _fleet(fake, 3)
    original = fake.status_batch

    def slow_batch(ids):
        time.sleep(0.5)
        return original(ids)

    monkeypatch.setattr(tick_module.services, "status_batch", slow_batch)
    reports: list[dict] = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        try:
            reports.append(pool_tick())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(bool(r["skipped"]) for r in reports) == [False, True]
    assert [r for r in reports if r["skipped"]][0]["skipped"] == "another tick is running"
    # And the lock is free again afterwards.
    assert pool_tick()["skipped"] == ""


def test_it_the_lease_lock_admits_one_holder_until_released_or_expired():
    with lease_lock("t", lease=timedelta(minutes=5)) as first:
        with lease_lock("t", lease=timedelta(minutes=5)) as second:
            assert first is True and second is False
    with lease_lock("t", lease=timedelta(minutes=5)) as again:
        assert again is True
    with lease_lock("short", lease=timedelta(seconds=-1)) as expired_at_once:
        with lease_lock("short", lease=timedelta(minutes=5)) as taker:
            assert expired_at_once is True and taker is True  # a dead holder's lease lapses


def test_it_one_failing_step_does_not_stop_the_others(fake, monkeypatch):
    def broken(config):
        raise RuntimeError("pending check exploded")

    monkeypatch.setattr(tick_module, "reconcile_claims", broken)
    report = pool_tick()
    assert "reconcile_claims" in report["errors"]
    assert report["steps"]["top_up"]["created"] == 3  # the step after it still ran


def test_it_destroys_and_replaces_stuck_and_dead_unclaimed_instances(fake, settings):
    settings.POOL_STUCK_TIMEOUT_MS = 60_000
    stuck, dead, fresh = _fleet(fake, 3, status=S.STARTING)
    Instance.objects.filter(pk=stuck.pk).update(unhealthy_since=timezone.now() - timedelta(minutes=5), deploy_status="unreachable")
    Instance.objects.filter(pk=fresh.pk).update(unhealthy_since=timezone.now(), deploy_status="unreachable")
    fake.instances[stuck.pk].healthy = False
    fake.instances[fresh.pk].healthy = False
    fake.instances[dead.pk].deploy_status = "CRASHED"

    report = pool_tick()
    assert report["steps"]["remove_dead"] == {"destroyed": 2, "failed": 0}
    assert Instance.objects.get(pk=stuck.pk).status == S.DELETED
    assert Instance.objects.get(pk=dead.pk).status == S.DELETED
    assert Instance.objects.get(pk=fresh.pk).status == S.STARTING  # young: still given time
    assert report["steps"]["top_up"]["created"] == 2
    reasons = list(InstanceEvent.objects.filter(instance_id=stuck.pk).values_list("to_status", "reason"))
    assert (S.DELETED, "replacing stuck instance") in reasons


def test_it_never_destroys_claimed_instances(fake, settings):
    settings.POOL_STUCK_TIMEOUT_MS = 1
    crashed, silent = _fleet(fake, 2, status=S.CLAIMED, claimed_at=timezone.now(), conversation_id="c")
    fake.instances[crashed.pk].deploy_status = "FAILED"
    fake.instances[silent.pk].healthy = False
    Instance.objects.filter(pk=silent.pk).update(unhealthy_since=timezone.now() - timedelta(hours=2))
    pool_tick()
    pool_tick()
    assert Instance.objects.get(pk=crashed.pk).status == S.CRASHED
    assert Instance.objects.get(pk=silent.pk).status == S.CLAIMED
    assert fake.calls.get("destroy", 0) == 0


def test_it_never_destroys_sleeping_instances(fake, settings):
    settings.POOL_STUCK_TIMEOUT_MS = 1
    (sleeper,) = _fleet(fake, 1)
    fake.instances[sleeper.pk].deploy_status = "SLEEPING"
    Instance.objects.filter(pk=sleeper.pk).update(unhealthy_since=timezone.now() - timedelta(days=1))
    pool_tick()
    pool_tick()
    assert Instance.objects.get(pk=sleeper.pk).status == S.SLEEPING
    assert fake.calls.get("destroy", 0) == 0


def test_it_changes_nothing_when_the_status_batch_fails_and_resumes_after(fake, api):
    fleet = _fleet(fake, 3)
    fake.instances[fleet[0].pk].deploy_status = "CRASHED"  # would be destroyed on a normal tick
    Instance.objects.filter(pk=fleet[1].pk).update(status=S.DEAD)  # already dead: destroy step would run
    fake.instances[fleet[1].pk].deploy_status = "FAILED"
    fake.batch_error = "services unreachable"
    before = {i.pk: i.status for i in Instance.objects.all()}

    report = pool_tick()
    assert "status batch failed" in report["outage"]
    assert {i.pk: i.status for i in Instance.objects.all()} == before
    assert fake.calls.get("destroy", 0) == 0 and fake.calls.get("create_instance", 0) == 0
    status = api.get("/api/pool/status").json()
    assert status["outage"]["active"] is True and "status batch failed" in status["outage"]["reason"]

    fake.batch_error = None
    report = pool_tick()
    assert report["outage"] == ""
    assert fake.calls["destroy"] == 2  # the crashed one and the dead one
    assert api.get("/api/pool/status").json()["outage"]["active"] is False


def test_it_treats_60_percent_of_a_healthy_fleet_vanishing_as_an_outage(fake, settings):
    settings.POOL_MIN_IDLE = 10
    fleet = _fleet(fake, 10)
    for instance in fleet[:6]:
        fake.instances[instance.pk].healthy = False
        fake.instances[instance.pk].deploy_status = "CRASHED"

    report = pool_tick()
    assert "6 of 10 healthy instances" in report["outage"]
    assert _statuses() == {S.IDLE: 10}
    assert fake.calls.get("destroy", 0) == 0 and fake.calls.get("create_instance", 0) == 0
    assert PoolState.objects.get().outage is True

    for instance in fleet[:6]:  # the fleet recovers
        fake.instances[instance.pk].healthy = True
        fake.instances[instance.pk].deploy_status = "SUCCESS"
    report = pool_tick()
    assert report["outage"] == "" and _statuses() == {S.IDLE: 10}
    assert PoolState.objects.get().outage is False


def test_it_a_few_deaths_below_the_threshold_are_handled_normally(fake, settings):
    settings.POOL_MIN_IDLE = 10
    fleet = _fleet(fake, 10)
    for instance in fleet[:3]:
        fake.instances[instance.pk].deploy_status = "CRASHED"
    report = pool_tick()
    assert report["outage"] == ""
    assert report["steps"]["remove_dead"]["destroyed"] == 3
    assert report["steps"]["top_up"]["created"] == 3


def test_it_top_up_respects_the_cap_on_unclaimed_instances_and_says_why(fake, settings):
    settings.POOL_MIN_IDLE = 5
    settings.POOL_MAX_TOTAL = 3
    _fleet(fake, 2, status=S.CLAIMED, claimed_at=timezone.now())  # claimed ones do not count
    report = pool_tick()
    assert report["steps"]["top_up"]["created"] == 3
    assert "POOL_MAX_TOTAL=3" in report["steps"]["top_up"]["capped"]


def test_it_pool_settings_from_admin_take_effect_at_the_next_tick(fake):
    pool_settings_update(changed_by="alice", min_idle=1)
    assert pool_tick()["steps"]["top_up"]["created"] == 1
    pool_settings_update(changed_by="alice", paused=True, min_idle=4)
    report = pool_tick()
    assert "paused" in report["steps"] and "top_up" not in report["steps"]
    pool_settings_update(changed_by="bob", paused=False)
    assert pool_tick()["steps"]["top_up"]["created"] == 3


def test_it_resolves_pending_acceptance_when_the_owner_accepts(fake):
    (instance,) = _fleet(fake, 1, status=S.PENDING_ACCEPTANCE, claimed_at=timezone.now(), conversation_id="conv-joined")
    fake.instances[instance.pk].bound = True
    fake.pending.add(instance.pk)
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.PENDING_ACCEPTANCE  # kept while pending
    fake.pending.discard(instance.pk)
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.CLAIMED


def test_it_a_claimed_instance_reporting_another_conversation_is_tainted_until_it_matches(fake):
    (instance,) = _fleet(fake, 1, status=S.CLAIMED, claimed_at=timezone.now(), conversation_id="conv-accepted")
    fake.instances[instance.pk].bound = True  # the fake reports "conv-accepted" while bound
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.CLAIMED
    fake.instances[instance.pk].bound = False  # it lost its conversation (reset behind the pool's back)
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.TAINTED
    assert fake.calls.get("destroy", 0) == 0  # tainted is for operators to look at, never destroyed
    fake.instances[instance.pk].bound = True
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.CLAIMED
