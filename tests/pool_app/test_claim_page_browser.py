"""The claim page as a person uses it, in Chromium: log in through the admin, see the console's
styles applied, claim, read the invite link and see its QR code; a bad invite link is explained."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from pool_app.models import Instance, InstanceStatus as S
from tests.browser import SCREENSHOTS
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

# The live server answers from its own thread: its reads must see committed rows.
pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)

PASSWORD = "pw-for-browser-tests"


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    return FakeServices().install(monkeypatch)


def test_it_claims_from_the_page_and_shows_the_invite(fake, live_server, browser_page):
    get_user_model().objects.create_superuser("op", "op@example.test", PASSWORD)
    row = Instance.objects.create(status=S.IDLE, deploy_status="healthy")
    fake.create_instance(row.pk)
    page = browser_page

    page.goto(f"{live_server.url}/")
    assert "/admin/login/" in page.url  # not logged in: the admin's login first
    page.fill("#id_username", "op")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    # The admin's stylesheet is applied (served by the app itself): the header has its colour.
    header_bg = page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor")
    assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), header_bg
    page.screenshot(path=str(SCREENSHOTS / "claim-page.png"), full_page=True)

    page.fill("#id_agent_name", "Ada")
    page.fill("#id_instructions", "Be brief.")
    page.click("input[value='Claim an agent']")
    page.wait_for_selector(".claim-result")
    invite = page.inner_text(".claim-invite")
    assert invite == Instance.objects.get(pk=row.pk).invite_url and invite.startswith("https://dev.convos.org/v2?i=")
    assert page.inner_text(".claim-instance") == row.pk
    # The QR code is a real image the browser decoded, not a broken one.
    assert page.eval_on_selector(".claim-qr", "img => img.complete && img.naturalWidth > 0")
    page.screenshot(path=str(SCREENSHOTS / "claim-page-claimed.png"), full_page=True)

    page.fill("#id_join_url", "https://example.com/not-an-invite")
    page.click("input[value='Claim an agent']")
    error = page.inner_text(".form-row.errors .errorlist")
    assert "Not a Convos invite link" in error
    assert page.eval_on_selector(".errorlist", "el => getComputedStyle(el).color") != "rgb(0, 0, 0)"  # styled as an error
    page.screenshot(path=str(SCREENSHOTS / "claim-page-error.png"), full_page=True)
