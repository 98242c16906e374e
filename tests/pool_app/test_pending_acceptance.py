"""A join waiting for the owner's acceptance: how it resolves, from the tick or from the instance
itself (`POST /api/pool/pending-acceptance/complete` and `/fail`, with its own services token)."""
from __future__ import annotations

import secrets

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import pool_tick
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

JOIN = "https://dev.convos.org/v2?i=pendingInviteSlug123"


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    return FakeServices().install(monkeypatch)


def _pending(fake: FakeServices) -> tuple[Instance, str]:
    """A claimed instance whose join waits for acceptance, and its services token."""
    row = Instance.objects.create(status=S.IDLE, deploy_status="healthy")
    fake.create_instance(row.pk)
    fake.pending.add(row.pk)
    answer = APIClient(HTTP_AUTHORIZATION=f"Bearer {_operator_key()}").post(
        "/api/pool/claim", {"agentName": "A", "instructions": "x", "joinUrl": JOIN}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "pending_acceptance", answer.content
    token = secrets.token_hex(16)
    fake.tokens[token] = row.pk
    return Instance.objects.get(pk=row.pk), token


def _operator_key() -> str:
    return settings.POOL_API_KEY


def _as_instance(token: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_it_claims_the_instance_when_it_reports_the_owner_accepted(fake):
    instance, token = _pending(fake)
    fake.pending.discard(instance.pk)
    fake.instances[instance.pk].bound = True  # it now holds the conversation
    response = _as_instance(token).post("/api/pool/pending-acceptance/complete", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "instanceId": instance.pk, "status": "claimed"}
    instance.refresh_from_db()
    assert instance.status == S.CLAIMED and instance.conversation_id == "conv-accepted"
    assert InstanceEvent.objects.filter(instance_id=instance.pk, to_status="claimed", actor="instance").exists()


def test_it_does_not_take_the_instances_word_when_it_still_reports_pending(fake):
    instance, token = _pending(fake)
    response = _as_instance(token).post("/api/pool/pending-acceptance/complete", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "still_pending"
    assert Instance.objects.get(pk=instance.pk).status == S.PENDING_ACCEPTANCE


def test_it_taints_the_instance_when_it_reports_the_join_failed(fake):
    instance, token = _pending(fake)
    response = _as_instance(token).post("/api/pool/pending-acceptance/fail", {"reason": "invite expired"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "tainted"
    event = InstanceEvent.objects.filter(instance_id=instance.pk, to_status="tainted").get()
    assert event.actor == "instance" and "invite expired" in event.reason


def test_it_refuses_other_tokens_and_instances_that_are_not_pending(fake):
    instance, token = _pending(fake)
    assert _as_instance(secrets.token_hex(16)).post("/api/pool/pending-acceptance/fail", {}, format="json").status_code == 401
    assert APIClient().post("/api/pool/pending-acceptance/fail", {}, format="json").status_code == 401
    # The operator key is not an instance's token either.
    assert _as_instance(_operator_key()).post("/api/pool/pending-acceptance/complete", {}, format="json").status_code == 401
    _as_instance(token).post("/api/pool/pending-acceptance/fail", {}, format="json")
    again = _as_instance(token).post("/api/pool/pending-acceptance/fail", {}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "not_pending"
    bad = _as_instance(token).post("/api/pool/pending-acceptance/fail", {"reason": ["x"]}, format="json")
    assert bad.status_code in (400, 409)


def test_it_lets_the_tick_taint_a_join_that_is_no_longer_pending_and_holds_nothing(fake):
    instance, _ = _pending(fake)
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.PENDING_ACCEPTANCE  # still waiting: kept
    fake.pending.discard(instance.pk)  # the runtime gave up on the join (or lost it): no conversation
    fake.instances[instance.pk].bound = False
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.TAINTED
