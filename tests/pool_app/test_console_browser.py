"""The operators' console in Chromium: the dashboard's counts are the API's, the instance page
shows an instance's timeline and its infra (from services, through the facade, on the fake infra
provider), an instance is destroyed after its confirmation page, and pausing the pool shows on
the dashboard."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services.operations import pool_replenish
from services_app.models import InstanceInfra
from tests.browser import SCREENSHOTS
from tests.conftest import ALL_DATABASES

# The live server answers from its own thread: its reads must see committed rows.
pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)

PASSWORD = "pw-for-console-tests"


@pytest.fixture
def console(settings, pool_work_inline):
    """The fake infra provider behind the real services layer; only the wallet is always on."""
    settings.INFRA_PROVIDER = "fake"
    settings.OPENROUTER_MANAGEMENT_KEY = ""
    settings.SERVICES_URL = ""
    settings.POOL_MIN_IDLE = 0
    get_user_model().objects.create_superuser("op", "op@example.test", PASSWORD)


def _login(page, live_server, next_path: str = "/admin/") -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "op")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{next_path}")


def _instance_url(live_server, instance_id: str) -> str:
    return f"{live_server.url}/admin/pool_app/instance/{instance_id}/change/"


def test_it_shows_the_dashboard_counts_the_status_api_gives(console, live_server, browser_page):
    for status in (S.IDLE, S.IDLE, S.IDLE, S.STARTING, S.CLAIMED, S.STUCK, S.DELETED):
        Instance.objects.create(status=status)
    page = browser_page
    _login(page, live_server)
    page.wait_for_selector("#fleet-dashboard")
    shown = {}
    for item in page.locator(".fleet-counts li").all():
        status = next(c for c in item.get_attribute("class").split() if c.startswith("fleet-count-"))[len("fleet-count-"):]
        shown[status] = int(item.locator("strong").inner_text())
    response = page.request.get(f"{live_server.url}/api/pool/status",
                                headers={"Authorization": f"Bearer {django_settings.POOL_API_KEY}"})
    assert response.status == 200
    counts = response.json()["counts"]
    assert shown == counts
    assert shown["idle"] == 3 and shown["claimed"] == 1 and "deleted" not in shown
    page.screenshot(path=str(SCREENSHOTS / "console-dashboard-counts.png"), full_page=True)


def test_it_shows_an_instances_timeline_health_and_infra(console, live_server, browser_page):
    [instance_id] = pool_replenish(count=1, actor="cli").instance_ids
    now = timezone.now()
    InstanceEvent.objects.bulk_create(
        InstanceEvent(instance_id=instance_id, from_status="idle", to_status="idle", actor="tick", reason=f"audit {n}",
                      created_at=now + timedelta(seconds=n))
        for n in range(105)
    )
    Instance.objects.filter(pk=instance_id).update(deploy_status="unreachable", last_error="health check timed out",
                                                    unhealthy_since=now)
    infra = InstanceInfra.objects.get(instance_id=instance_id)
    page = browser_page
    _login(page, live_server)
    page.goto(_instance_url(live_server, instance_id))
    page.wait_for_selector("#instance-page")

    # The timeline: newest first, bounded.
    events = page.locator(".instance-timeline .instance-event")
    assert events.count() == 100
    assert "audit 104" in events.first.inner_text()
    assert events.last.inner_text().endswith("audit 5")
    # Health as last seen.
    assert page.inner_text(".instance-deploy-status") == "unreachable"
    assert page.inner_text(".instance-last-error") == "health check timed out"
    # Infra and resources, as services holds them.
    assert page.inner_text(".instance-infra-provider") == "fake"
    assert page.inner_text(".instance-infra-url") == infra.url
    resources = page.inner_text(".instance-resources")
    assert "wallet" in resources and infra.resources.get().resource_id in resources and "active" in resources
    # Nothing secret of it is on the page.
    html = page.content()
    for secret in (infra.secret_nonce, infra.instance_services_token_hash):
        assert secret not in html
    assert "PRIVATE_WALLET_KEY" not in html
    # Its actions are on the page.
    for action in ("destroy_selected", "redeploy_selected", "recheck_selected"):
        assert page.locator(f".instance-action-{action} input[type=submit]").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "console-instance-page.png"), full_page=True)


def test_it_destroys_an_instance_after_its_confirmation_page(console, live_server, browser_page):
    [instance_id] = pool_replenish(count=1, actor="cli").instance_ids
    assert InstanceInfra.objects.filter(instance_id=instance_id).exists()
    page = browser_page
    _login(page, live_server)
    page.goto(_instance_url(live_server, instance_id))
    page.click(".instance-action-destroy_selected input[type=submit]")

    # Nothing is destroyed before the confirmation.
    page.wait_for_selector("text=Destroy instances: are you sure?")
    assert instance_id in page.inner_text("#content")
    assert Instance.objects.get(pk=instance_id).status == S.STARTING
    page.screenshot(path=str(SCREENSHOTS / "console-destroy-confirm.png"), full_page=True)

    page.click("input[value='Yes, destroy']")
    page.wait_for_selector(".messagelist")
    assert f"destroy: 1 instance(s): {instance_id}" in page.inner_text(".messagelist").lower()  # the admin capitalises
    assert Instance.objects.get(pk=instance_id).status in (S.DESTROYING, S.DELETED)
    assert not InstanceInfra.objects.filter(instance_id=instance_id).exists()

    page.goto(_instance_url(live_server, instance_id))
    assert page.inner_text(".instance-status") in ("destroying", "deleted")
    assert page.locator(".instance-infra-missing").count() == 1  # services holds nothing any more
    assert page.locator(".instance-actions").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "console-destroyed.png"), full_page=True)


def test_it_pauses_and_unpauses_the_pool_from_its_settings_page(console, live_server, browser_page):
    page = browser_page
    _login(page, live_server)
    assert page.locator(".fleet-paused").count() == 0

    page.goto(f"{live_server.url}/admin/pool_app/poolsettings/")  # opens the one row
    page.check("#id_paused")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    page.goto(f"{live_server.url}/admin/")
    assert "The pool is paused" in page.inner_text(".fleet-paused")
    page.screenshot(path=str(SCREENSHOTS / "console-paused.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/pool_app/poolsettings/")
    page.uncheck("#id_paused")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#fleet-dashboard")
    assert page.locator(".fleet-paused").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "console-unpaused.png"), full_page=True)
