"""The operator's claim page at `/`, through the Django test client (the browser test drives the
same page in Chromium: tests/pool_app/test_claim_page_browser.py)."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from pool_app.models import Instance, InstanceStatus as S
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    return FakeServices().install(monkeypatch)


@pytest.fixture
def operator(client):
    get_user_model().objects.create_superuser("op", "op@example.test", "pw-for-tests-only")
    client.login(username="op", password="pw-for-tests-only")
    return client


def test_it_sends_a_visitor_who_is_not_logged_in_to_the_admin_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=/")


def test_it_claims_and_shows_the_invite_link_qr_and_instance(fake, operator):
    row = Instance.objects.create(status=S.IDLE, deploy_status="healthy")
    fake.create_instance(row.pk)
    response = operator.post("/", {"agent_name": "Ada", "instructions": "Be brief.", "join_url": ""})
    assert response.status_code == 200
    html = response.content.decode()
    instance = Instance.objects.get(pk=row.pk)
    assert instance.status == S.CLAIMED and instance.agent_name == "Ada" and instance.source == "console"
    assert instance.invite_url and instance.invite_url in html and row.pk in html
    assert 'class="claim-qr" src="data:image/png;base64,' in html


def test_it_shows_why_a_claim_could_not_be_made(fake, operator):
    nothing_idle = operator.post("/", {"agent_name": "Ada"})
    assert "No idle instance is available" in nothing_idle.content.decode()
    bad_link = operator.post("/", {"agent_name": "Ada", "join_url": "https://example.com/x"}).content.decode()
    # Shown at the invite field, in words (the API's field prefix left out).
    row = bad_link.split('class="form-row errors"', 1)[1].split("</div>", 1)[0]
    assert "Not a Convos invite link" in row and "joinUrl:" not in row
