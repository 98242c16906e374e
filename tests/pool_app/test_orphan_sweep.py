"""The tick's orphan sweep step (pool_app/services/orphan_sweep.py): how often it runs, that a
failing sweep never fails the tick, that a paused pool reports but deletes nothing, and the whole
path through the in-process facade to the fake provider."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from pool_app.config import pool_settings_update
from pool_app.models import TickRecord
from pool_app.services import pool_tick
from services_app import facade
from services_app.providers.fake import FakeProvider, fake_instance
from services_app.services import ServicesError
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 1
    settings.ORPHAN_SWEEP_MS = 600_000
    return FakeServices().install(monkeypatch)


def _age_tick_history(by: timedelta) -> None:
    for record in TickRecord.objects.all():
        TickRecord.objects.filter(pk=record.pk).update(at=record.at - by)


def test_it_sweeps_at_most_once_per_orphan_sweep_ms(fake):
    first = pool_tick()
    assert first["steps"]["orphan_sweep"]["ran"] is True and fake.calls["orphan_sweep"] == 1
    second = pool_tick()
    assert second["steps"]["orphan_sweep"]["ran"] is False and 0 < second["steps"]["orphan_sweep"]["nextInS"] <= 600
    assert fake.calls["orphan_sweep"] == 1
    _age_tick_history(timedelta(minutes=9))
    pool_tick()
    assert fake.calls["orphan_sweep"] == 1
    _age_tick_history(timedelta(minutes=2))  # the last sweep is now 11 minutes old
    assert pool_tick()["steps"]["orphan_sweep"]["ran"] is True and fake.calls["orphan_sweep"] == 2


def test_it_never_sweeps_when_orphan_sweep_ms_is_zero(fake, settings):
    settings.ORPHAN_SWEEP_MS = 0
    assert pool_tick()["steps"]["orphan_sweep"]["ran"] is False and "orphan_sweep" not in fake.calls


def test_it_records_a_failing_listing_as_the_steps_error_and_runs_the_rest(fake, monkeypatch):
    monkeypatch.setattr(facade, "orphan_sweep", lambda **_: {
        "providers": {"openrouter": {"listed": 3, "orphans": [{"name": "convos-x"}], "deleted": 0}},
        "errors": {"railway": "Railway WorkspaceProjectNames: failed after 5 attempts"}, "delete": False})
    report = pool_tick()
    assert "railway: Railway WorkspaceProjectNames" in report["errors"]["orphan_sweep"]
    assert "openrouter" in report["errors"]["orphan_sweep"]
    assert "orphan_sweep" not in report["steps"] and report["steps"]["top_up"]["created"] == 1
    # A failed sweep counts as a run: the failing listing is not asked again at the next tick.
    assert pool_tick()["steps"]["orphan_sweep"]["ran"] is False


def test_it_survives_a_sweep_that_raises(fake, monkeypatch):
    def broken(**_):
        raise ServicesError("Services unreachable (ConnectionError)", code="services_unreachable")

    monkeypatch.setattr(facade, "orphan_sweep", broken)
    report = pool_tick()
    assert "Services unreachable" in report["errors"]["orphan_sweep"] and report["steps"]["top_up"]["created"] == 1


def test_it_reports_but_deletes_nothing_while_the_pool_is_paused(fake, monkeypatch):
    asked: list[bool] = []
    monkeypatch.setattr(facade, "orphan_sweep", lambda *, delete_allowed: asked.append(delete_allowed) or {"providers": {}, "errors": {}})
    pool_settings_update(paused=True, changed_by="test")
    report = pool_tick()
    assert report["steps"]["orphan_sweep"]["ran"] is True and asked == [False]


def test_it_reports_a_fake_provider_orphan_in_the_tick_report(settings, pool_work_inline):
    settings.INFRA_PROVIDER = "fake"
    settings.FAKE_FLEET_URL = ""
    settings.POOL_MIN_IDLE = 0
    settings.ORPHAN_SWEEP_MS = 600_000
    settings.ORPHAN_SWEEP_DELETE = False
    for name in ("OPENROUTER_MANAGEMENT_KEY", "AGENTMAIL_API_KEY", "TELNYX_API_KEY", "BANKR_API_KEY"):
        setattr(settings, name, "")
    orphan = secrets.token_hex(6)
    FakeProvider().create(instance_id=orphan, variables={})  # created, never recorded
    fake_instance(orphan).created_at -= timedelta(hours=1)
    try:
        report = pool_tick()
        step = report["steps"]["orphan_sweep"]
        assert step["ran"] is True and orphan in step["found"]["fake"] and step["delete"] is False
        assert fake_instance(orphan) is not None
    finally:
        FakeProvider().destroy_unrecorded(orphan)
