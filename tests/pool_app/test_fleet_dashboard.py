"""The fleet dashboard on the admin's front page: what it shows, how few queries it takes, and
(in Chromium) how it looks."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pool_app.dashboard import fleet_dashboard
from pool_app.models import Instance, InstanceEvent, InstanceStatus as S, PoolState, TickRecord
from tests.browser import SCREENSHOTS
from tests.conftest import ALL_DATABASES

PASSWORD = "pw-for-dashboard-tests"


def _fleet() -> None:
    for status in (S.IDLE, S.IDLE, S.STARTING, S.CLAIMED):
        Instance.objects.create(status=status)
    now = timezone.now()
    for n in range(30):
        TickRecord.objects.create(at=now - timedelta(seconds=30 * n), duration_ms=100 + n, idle=n % 4,
                                  steps={"top_up": {"created": n % 2}}, errors={"observe": "boom"} if n == 0 else {})
    InstanceEvent.objects.create(instance_id="abc", from_status="claiming", to_status="claimed", actor="api",
                                 reason="claimed as 'Ada'", created_at=now - timedelta(minutes=5))
    InstanceEvent.objects.create(instance_id="abd", from_status="claiming", to_status="claimed", actor="api",
                                 reason="claimed", created_at=now - timedelta(hours=30))  # older than a day


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_counts_ticks_claims_and_events_with_few_queries():
    _fleet()
    with CaptureQueriesContext(connections["pool"]) as queries:
        data = fleet_dashboard()
    assert dict(data["counts"])["idle"] == 2 and data["live"] == 4
    assert len(data["ticks"]) == 20 and data["ticks"][0].errors == {"observe": "boom"}
    assert data["chart"].duration_points.count(",") == 30  # one point per tick drawn
    assert sum(n for _, n in data["claims_per_hour"]) == 1 and len(data["claims_per_hour"]) == 24
    assert data["events"][0].instance_id == "abc"
    assert len(queries) <= 8, [q["sql"] for q in queries]


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_shows_the_fleet_on_the_admins_front_page(live_server, browser_page):
    _fleet()
    PoolState.objects.create(pk=1, outage=True, outage_reason="status batch failed: services unreachable",
                             outage_since=timezone.now())
    get_user_model().objects.create_superuser("op", "op@example.test", PASSWORD)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "op")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#fleet-dashboard")
    banner = page.locator(".fleet-outage")
    assert "services unreachable" in banner.inner_text()
    assert page.eval_on_selector(".fleet-outage", "el => getComputedStyle(el).backgroundColor") == "rgb(186, 33, 33)"
    assert page.inner_text(".fleet-count-idle strong") == "2"
    assert page.locator(".fleet-chart-duration").get_attribute("points").count(",") == 30
    assert page.locator(".fleet-ticks tbody tr").count() == 20
    assert "observe: boom" in page.inner_text(".fleet-ticks")
    page.screenshot(path=str(SCREENSHOTS / "fleet-dashboard.png"), full_page=True)
    # Every action is one click away: the claim page, then back.
    page.click("text=Claim an agent")
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator("input[value='Claim an agent']").count() == 1
