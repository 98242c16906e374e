"""Claims as the production pool's clients send them (issue 12): its landing page sends only a
joinUrl and a source; the defaults, the profile fields and the runtime kind work as production's."""
from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from pool_app.models import Instance, InstanceStatus as S
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

JOIN = "https://dev.convos.org/v2?i=landingInviteSlug42"


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    fake = FakeServices().install(monkeypatch)
    fake.configured_with = []
    original = fake.configure

    def configure(instance_id, **kwargs):
        fake.configured_with.append(kwargs)
        return original(instance_id, **kwargs)

    monkeypatch.setattr("services_app.facade.configure", configure)
    return fake


def _idle(fake: FakeServices, n: int = 1, **fields) -> list[Instance]:
    rows = [Instance.objects.create(status=S.IDLE, deploy_status="healthy", **fields) for _ in range(n)]
    for row in rows:
        fake.create_instance(row.pk)
    return rows


def _claim(body: dict):
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {settings.POOL_API_KEY}").post("/api/pool/claim", body, format="json")


def test_it_claims_the_landing_pages_request_with_productions_defaults(fake):
    (row,) = _idle(fake)
    response = _claim({"joinUrl": JOIN, "source": "landing"})
    assert response.status_code == 200, response.content
    assert response.json()["agentName"] == "Assistant"
    sent = fake.configured_with[0]
    assert sent["agent_name"] == "Assistant" and sent["instructions"] == "You are a helpful AI assistant."
    row.refresh_from_db()
    assert row.source == "landing" and row.agent_name == "Assistant" and row.join_url == JOIN


def test_it_claims_an_empty_body_and_never_sends_empty_instructions(fake):
    _idle(fake, 2)
    assert _claim({}).status_code == 200
    assert _claim({"agentName": "Ada", "instructions": ""}).status_code == 200
    assert [c["instructions"] for c in fake.configured_with] == ["You are a helpful AI assistant."] * 2


def test_it_passes_profile_image_and_metadata_to_the_instance_and_records_them(fake):
    (row,) = _idle(fake)
    body = {"agentName": "Ada", "instructions": "x", "profileImage": "https://img.test/ada.png", "metadata": {"team": "blue"},
            "model": None}
    assert _claim(body).status_code == 200
    sent = fake.configured_with[0]
    assert sent["profile_image"] == "https://img.test/ada.png" and sent["metadata"] == {"team": "blue"}
    row.refresh_from_db()
    assert row.profile_image == "https://img.test/ada.png" and row.metadata == {"team": "blue"}


def test_it_claims_only_instances_of_the_runtime_asked_for(fake):
    convos, hermes = _idle(fake)[0], _idle(fake, runtime_kind="hermes")[0]
    response = _claim({"runtime": "hermes"})
    assert response.status_code == 200 and response.json()["instanceId"] == hermes.pk
    none_left = _claim({"runtime": "openclaw"})
    assert none_left.status_code == 503 and "runtime openclaw" in none_left.json()["error"]
    assert Instance.objects.get(pk=convos.pk).status == S.IDLE
