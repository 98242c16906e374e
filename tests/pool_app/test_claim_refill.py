"""A claim that leaves the pool short asks for a tick at once (issue 10): exactly one, only then, and
never at the claim's expense when the broker is down."""
from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from pool_app.config import pool_settings_update
from pool_app.models import Instance, InstanceStatus as S
from pool_app.services import claim as claim_module
from pool_app.tasks import pool_tick_task
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
CLAIM = "/api/pool/claim"
REAL_ENQUEUE = claim_module._enqueue_tick  # before conftest's recorder replaces it


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 2
    return FakeServices().install(monkeypatch)


@pytest.fixture
def broker(monkeypatch) -> list[dict]:
    """The real enqueue, with the task's apply_async recorded instead of sent to Redis."""
    sent: list[dict] = []
    monkeypatch.setattr(claim_module, "_enqueue_tick", REAL_ENQUEUE)
    monkeypatch.setattr(pool_tick_task, "apply_async", lambda *args, **kwargs: sent.append(kwargs))
    return sent


def _idle(fake: FakeServices, n: int) -> None:
    for _ in range(n):
        fake.create_instance(Instance.objects.create(status=S.IDLE, deploy_status="healthy").pk)
    fake.calls.clear()


def _claim(django_capture_on_commit_callbacks):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}")
    with django_capture_on_commit_callbacks(using="pool", execute=True):
        return client.post(CLAIM, {"agentName": "agent"}, format="json")


def test_it_a_claim_that_leaves_the_pool_short_enqueues_one_tick(fake, broker, django_capture_on_commit_callbacks):
    _idle(fake, 2)  # one left after the claim, below POOL_MIN_IDLE=2
    response = _claim(django_capture_on_commit_callbacks)
    assert response.status_code == 200, response.content
    assert len(broker) == 1


def test_it_a_claim_that_leaves_enough_enqueues_nothing(fake, broker, django_capture_on_commit_callbacks):
    _idle(fake, 3)  # two left
    response = _claim(django_capture_on_commit_callbacks)
    assert response.status_code == 200, response.content
    assert broker == []


def test_it_a_failed_claim_enqueues_nothing(fake, broker, django_capture_on_commit_callbacks):
    response = _claim(django_capture_on_commit_callbacks)  # nothing idle: 503
    assert response.status_code == 503 and broker == []


def test_it_can_be_turned_off(fake, broker, settings, django_capture_on_commit_callbacks):
    settings.POOL_REFILL_AFTER_CLAIM = False
    _idle(fake, 1)
    assert _claim(django_capture_on_commit_callbacks).status_code == 200
    assert broker == []


def test_it_a_broker_that_is_down_does_not_fail_the_claim(fake, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(claim_module, "_enqueue_tick", REAL_ENQUEUE)

    def down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to localhost:6379")

    monkeypatch.setattr(pool_tick_task, "apply_async", down)
    warnings: list[str] = []
    monkeypatch.setattr(claim_module.logger, "warning", lambda message, *args: warnings.append(message % args))
    _idle(fake, 1)
    response = _claim(django_capture_on_commit_callbacks)
    assert response.status_code == 200, response.content
    assert Instance.objects.get().status == S.CLAIMED
    assert len(warnings) == 1 and "could not enqueue a refill tick" in warnings[0] and "Error 111" in warnings[0]


def test_it_the_suite_records_instead_of_enqueuing(fake, refill_ticks, django_capture_on_commit_callbacks):
    _idle(fake, 1)
    assert _claim(django_capture_on_commit_callbacks).status_code == 200
    assert refill_ticks == ["pool_tick"]


def test_it_reads_the_idle_target_an_operator_set_in_admin(fake, broker, django_capture_on_commit_callbacks):
    _idle(fake, 3)  # two left: enough for the setting (2), short of the override (5)
    pool_settings_update(changed_by="op", min_idle=5)
    response = _claim(django_capture_on_commit_callbacks)
    assert response.status_code == 200, response.content
    assert len(broker) == 1


def test_it_a_burst_of_claims_that_drains_the_pool_asks_for_one_tick_per_interval(fake, broker, settings,
                                                                                  django_capture_on_commit_callbacks):
    settings.POOL_MIN_IDLE = 10
    settings.POOL_REFILL_MIN_INTERVAL_MS = 60_000
    _idle(fake, 4)
    for _ in range(4):
        assert _claim(django_capture_on_commit_callbacks).status_code == 200
    assert len(broker) == 1  # not one tick per claim: the worker would run them back to back


def test_it_asks_again_once_the_interval_has_passed(fake, broker, settings, django_capture_on_commit_callbacks):
    settings.POOL_MIN_IDLE = 10
    settings.POOL_REFILL_MIN_INTERVAL_MS = 0
    _idle(fake, 3)
    for _ in range(3):
        assert _claim(django_capture_on_commit_callbacks).status_code == 200
    assert len(broker) == 3


def test_it_counts_idle_instances_only_up_to_the_target(fake, broker, settings, django_capture_on_commit_callbacks):
    """With thousands idle the check must not count them all: counting stops at POOL_MIN_IDLE (+1
    on PostgreSQL, where the reserving statement counts in a snapshot that still holds its row)."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    _idle(fake, 5)
    with CaptureQueriesContext(connections["pool"]) as queries:
        assert _claim(django_capture_on_commit_callbacks).status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    counting = [sql for sql in statements if "COUNT(" in sql.upper()]
    assert len(counting) == 1, statements
    if connections["pool"].vendor == "postgresql":
        # No statement of its own: the reservation answers, with the admin override read inline.
        assert counting[0].startswith("WITH moved AS (UPDATE") and "LIMIT COALESCE((SELECT min_idle FROM pool_settings" in counting[0]
        assert not [sql for sql in statements if sql.startswith('SELECT "pool_settings"')]
    else:
        assert "LIMIT 2" in counting[0]
    assert broker == []  # four left, POOL_MIN_IDLE=2


def test_it_does_not_count_protected_or_dirty_idle_instances(fake, broker, settings, django_capture_on_commit_callbacks):
    _idle(fake, 4)
    protected, dirty = Instance.objects.order_by("-created_at")[:2]
    Instance.objects.filter(pk=protected.pk).update(protected=True)
    Instance.objects.filter(pk=dirty.pk).update(needs_reset=True)
    assert _claim(django_capture_on_commit_callbacks).status_code == 200
    assert len(broker) == 1  # one claimable left of four idle, below POOL_MIN_IDLE=2
