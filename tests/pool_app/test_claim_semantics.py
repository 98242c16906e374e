"""Claim semantics: idempotency, joinUrl dedupe, protection, failure recovery, QR, no overshoot."""
from __future__ import annotations

import base64
import threading
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from pool_app.models import ClaimRequest, Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import pool_tick
from pool_app.services.claim import claim_spec
from pool_app.services.idempotency import body_fingerprint
from services_app.services import ServicesError
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
CLAIM = "/api/pool/claim"
JOIN = "https://dev.convos.org/v2?i=abc123"


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    return FakeServices().install(monkeypatch)


def _idle(fake: FakeServices, n: int, **fields) -> list[Instance]:
    rows = [Instance.objects.create(status=S.IDLE, deploy_status="healthy", **fields) for _ in range(n)]
    for row in rows:
        fake.create_instance(row.pk)
    fake.calls.clear()
    return rows


def _client(headers: dict | None = None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}", **(headers or {}))
    return client


def _body(name: str = "agent") -> dict:
    return {"agentName": name, "instructions": "Be helpful."}


def _spec_fields(name: str = "agent") -> dict:
    return {"agent_name": name, "instructions": "Be helpful."}


def _concurrently(n: int, fn) -> list:
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- idempotency ------------------------------------------------------------------------------------
def test_it_replays_the_same_answer_for_the_same_key_and_body(fake):
    _idle(fake, 2)
    client = _client({"HTTP_IDEMPOTENCY_KEY": "key-1"})
    first = client.post(CLAIM, _body(), format="json")
    second = client.post(CLAIM, _body(), format="json")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert fake.calls["configure"] == 1
    assert Instance.objects.filter(status=S.CLAIMED).count() == 1


def test_it_refuses_the_same_key_with_another_body(fake):
    _idle(fake, 2)
    client = _client({"HTTP_IDEMPOTENCY_KEY": "key-1"})
    assert client.post(CLAIM, _body("a"), format="json").status_code == 200
    response = client.post(CLAIM, _body("b"), format="json")
    assert response.status_code == 409
    assert "different request body" in response.json()["error"]
    assert Instance.objects.filter(status=S.CLAIMED).count() == 1


def test_it_a_failed_claim_gives_its_key_back(fake):
    client = _client({"HTTP_IDEMPOTENCY_KEY": "key-1"})
    assert client.post(CLAIM, _body(), format="json").status_code == 503  # nothing idle yet
    _idle(fake, 1)
    assert client.post(CLAIM, _body(), format="json").status_code == 200
    assert ClaimRequest.objects.get().state == ClaimRequest.State.SUCCEEDED


def test_it_a_key_left_in_progress_by_a_dead_claim_is_taken_over_after_the_claim_timeout(fake, settings):
    # Finding 14.7: a crash left the key `in_progress`; it answered 409 for ever.
    settings.CLAIM_TIMEOUT_MS = 60_000
    _idle(fake, 1)
    client = _client({"HTTP_IDEMPOTENCY_KEY": "key-1"})
    # The key covers the claim as resolved (its spec), so a repeat of the same request matches it.
    ClaimRequest.objects.create(owner_key="operator", idempotency_key="key-1",
                                body_hash=body_fingerprint(asdict(claim_spec(**_spec_fields(), owner_id="operator"))),
                                created_at=timezone.now() - timedelta(minutes=5))
    response = client.post(CLAIM, _body(), format="json")
    assert response.status_code == 200, response.content
    assert ClaimRequest.objects.get().state == ClaimRequest.State.SUCCEEDED


def test_it_the_stored_answer_keeps_no_qr_image_and_the_replay_draws_it_again(fake):
    _idle(fake, 1)
    client = _client({"HTTP_IDEMPOTENCY_KEY": "key-1"})
    first = client.post(CLAIM + "?qr=true", _body(), format="json").json()
    assert first["qrDataUrl"].startswith("data:image/png;base64,")
    stored = ClaimRequest.objects.get().response
    assert "qrDataUrl" not in stored and stored["inviteUrl"] == first["inviteUrl"]
    replay = client.post(CLAIM + "?qr=true", _body(), format="json")
    assert replay["Idempotent-Replayed"] == "true" and replay.json() == first
    # A replay follows its own ?qr=, like a first claim.
    plain = client.post(CLAIM, _body(), format="json")
    assert plain["Idempotent-Replayed"] == "true" and plain.json() == {**first, "qrDataUrl": None}


def test_it_the_tick_prunes_keys_older_than_their_ttl(fake, settings):
    settings.CLAIM_REQUEST_TTL_HOURS = 24
    old = ClaimRequest.objects.create(owner_key="pool", idempotency_key="old", body_hash="x", created_at=timezone.now() - timedelta(hours=25))
    fresh = ClaimRequest.objects.create(owner_key="pool", idempotency_key="fresh", body_hash="x")
    assert pool_tick()["steps"]["prune_claim_requests"] == {"deleted": 1}
    assert list(ClaimRequest.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not ClaimRequest.objects.filter(pk=old.pk).exists()


# Claims race on their own connections (row locks, SKIP LOCKED): the rows must be committed for them to see.
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_50_concurrent_claims_with_20_keys_map_each_key_to_one_instance(fake, postgres_only):
    _idle(fake, 30)
    fake.configure_delay = 0.02  # keep claims in flight long enough to overlap
    keys = [f"key-{i % 20}" for i in range(50)]

    def claim(i: int):
        response = _client({"HTTP_IDEMPOTENCY_KEY": keys[i]}).post(CLAIM, _body(keys[i]), format="json")
        return keys[i], response.status_code, response.json()

    results = _concurrently(50, claim)
    assert {status for _, status, _ in results} == {200}, [r for r in results if r[1] != 200][:3]
    by_key: dict[str, set[str]] = defaultdict(set)
    for key, _, body in results:
        by_key[key].add(body["instanceId"])
    assert len(by_key) == 20 and all(len(ids) == 1 for ids in by_key.values())  # each key -> one instance
    instance_ids = [next(iter(ids)) for ids in by_key.values()]
    assert len(set(instance_ids)) == 20  # no instance shared by two keys
    assert Counter(fake.configured) == Counter({i: 1 for i in instance_ids})  # each provisioned once
    assert Instance.objects.filter(status=S.CLAIMED).count() == 20
    assert Instance.objects.filter(status=S.IDLE).count() == 10


# --- joinUrl ------------------------------------------------------------------------------------------
def test_it_a_second_claim_for_a_claimed_join_url_gets_409(fake):
    _idle(fake, 2)
    first = _client().post(CLAIM, {**_body(), "joinUrl": JOIN}, format="json")
    assert first.status_code == 200 and first.json()["joined"] is True
    second = _client().post(CLAIM, {**_body(), "joinUrl": JOIN}, format="json")
    assert second.status_code == 409 and "joinUrl" in second.json()["error"]
    assert Instance.objects.filter(status=S.IDLE).count() == 1


# Claims race on their own connections (row locks, SKIP LOCKED): the rows must be committed for them to see.
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_concurrent_claims_for_one_join_url_claim_it_once(fake, postgres_only):
    _idle(fake, 5)
    fake.configure_delay = 0.05
    results = _concurrently(5, lambda i: _client().post(CLAIM, {**_body(), "joinUrl": JOIN}, format="json").status_code)
    assert sorted(results) == [200, 409, 409, 409, 409]
    assert fake.calls["configure"] == 1
    assert Instance.objects.filter(join_url=JOIN).count() == 1


def test_it_refuses_a_join_url_of_the_other_environment(fake, settings):
    _idle(fake, 1)
    settings.XMTP_ENV = "production"
    response = _client().post(CLAIM, {**_body(), "joinUrl": JOIN}, format="json")
    assert response.status_code == 400 and "joinUrl" in response.json()["error"]
    assert "dev environment" in response.json()["error"]


# --- protection -----------------------------------------------------------------------------------
def test_it_never_claims_protected_instances(fake, settings):
    flagged, listed = _idle(fake, 2)
    Instance.objects.filter(pk=flagged.pk).update(protected=True)
    settings.PROTECTED_INSTANCES = [listed.pk]
    assert _client().post(CLAIM, _body(), format="json").status_code == 503
    assert fake.calls.get("configure", 0) == 0


# --- failure recovery --------------------------------------------------------------------------------
def test_it_a_409_from_the_instance_takes_it_out_of_the_pool_unreset_and_tries_another(fake):
    bound, free = _idle(fake, 2)
    fake.instances[bound.pk].bound = True  # the instance says it is already in a conversation
    response = _client().post(CLAIM, _body(), format="json")
    assert response.status_code == 200 and response.json()["instanceId"] == free.pk
    row = Instance.objects.get(pk=bound.pk)
    assert row.status == S.TAINTED and row.needs_reset  # never offered again
    assert fake.calls.get("reset", 0) == 0  # its conversation is not ours to wipe


@pytest.mark.parametrize("clean,final", [(True, S.IDLE), (False, S.CRASHED)])
def test_it_a_failed_provision_resets_the_instance_and_answers_502(fake, clean, final):
    (instance,) = _idle(fake, 1)
    fake.instances[instance.pk].clean_after_reset = clean
    fake.configure_error = ServicesError("Instance x: POST /pool/provision answered 500")
    response = _client().post(CLAIM, _body(), format="json")
    assert response.status_code == 502
    assert "Provisioning instance" in response.json()["error"]
    assert Instance.objects.get(pk=instance.pk).status == final
    assert fake.calls["reset"] == 1
    events = list(InstanceEvent.objects.filter(instance_id=instance.pk).order_by("id").values_list("to_status", flat=True))
    assert events[-3:] == [S.CLAIMING, S.RESETTING, final]  # owned by the recovery before the reset


def test_it_the_tick_recovers_a_claim_stuck_in_claiming(fake, settings):
    settings.CLAIM_TIMEOUT_MS = 60_000
    stale, fresh = _idle(fake, 2)
    Instance.objects.filter(pk=stale.pk).update(status=S.CLAIMING, claim_started_at=timezone.now() - timedelta(minutes=5))
    Instance.objects.filter(pk=fresh.pk).update(status=S.CLAIMING, claim_started_at=timezone.now())
    report = pool_tick()
    assert report["steps"]["recover_stale_claims"] == {"recovered": 1, "idle": 1, "crashed": 0, "dead": 0}
    assert Instance.objects.get(pk=stale.pk).status == S.IDLE
    assert Instance.objects.get(pk=fresh.pk).status == S.CLAIMING  # a claim in progress is left alone


# --- response ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qr", ["true", "1", "TRUE"])
def test_it_the_answer_carries_a_png_qr_code_of_the_invite_when_asked(fake, qr):
    _idle(fake, 1)
    body = _client().post(f"{CLAIM}?qr={qr}", _body(), format="json").json()
    assert body["qrDataUrl"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["qrDataUrl"].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("query", ["", "?qr=false", "?qr=0"])
def test_it_the_answer_has_a_null_qr_code_unless_asked(fake, query):
    _idle(fake, 1)
    body = _client().post(CLAIM + query, _body(), format="json").json()
    assert body["inviteUrl"] and "qrDataUrl" in body and body["qrDataUrl"] is None


def test_it_an_invalid_qr_parameter_is_a_400_naming_it_and_takes_no_instance(fake):
    (instance,) = _idle(fake, 1)
    response = _client().post(CLAIM + "?qr=yes", _body(), format="json")
    assert response.status_code == 400 and "qr" in response.content.decode()
    assert Instance.objects.get(pk=instance.pk).status == S.IDLE


def test_it_pending_acceptance_from_the_instance_is_kept(fake):
    (instance,) = _idle(fake, 1)
    fake.pending.add(instance.pk)
    body = _client().post(CLAIM, {**_body(), "joinUrl": JOIN}, format="json").json()
    assert body["status"] == "pending_acceptance"
    assert Instance.objects.get(pk=instance.pk).status == S.PENDING_ACCEPTANCE


# --- no overshoot ------------------------------------------------------------------------------------
# Ticks and claims on their own threads and connections, racing for the same rows.
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_ticks_during_concurrent_claims_never_overshoot_min_idle(fake, settings, postgres_only):
    settings.POOL_MIN_IDLE = 5
    settings.POOL_MAX_TOTAL = 100
    _idle(fake, 12)
    fake.configure_delay = 0.01
    stop = threading.Event()
    seen: list[int] = []

    def ticker() -> None:
        try:
            while not stop.is_set():
                pool_tick()
                seen.append(Instance.objects.filter(status__in=[S.IDLE, S.STARTING]).count())
        finally:
            connections.close_all()

    tickers = [threading.Thread(target=ticker) for _ in range(2)]
    for t in tickers:
        t.start()
    results = _concurrently(10, lambda i: _client().post(CLAIM, _body(f"a{i}"), format="json").status_code)
    stop.set()
    for t in tickers:
        t.join()
    assert results.count(200) == 10
    pool_tick()
    pool_tick()
    idle_or_starting = Instance.objects.filter(status__in=[S.IDLE, S.STARTING]).count()
    assert idle_or_starting == 5
    # Only the deficit was ever created: 12 - 10 claimed = 2 left, so exactly 3 were added.
    assert Instance.objects.exclude(status=S.DELETED).count() == 12 + 3
    assert max(seen, default=0) <= 12  # never more than the pool had to begin with
