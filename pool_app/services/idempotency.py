"""Idempotent claims: the same Idempotency-Key and body return the same answer, once claimed.

The key is taken by inserting a row under a unique (owner, key) index, so of two concurrent
requests with one key exactly one claims; the other waits for that claim's answer and returns it.
A claim that fails gives its key back, so the client can retry with the same key.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from convos.errors import Conflict
from pool_app.models import ClaimRequest

DB = "pool"
_POLL_S = 0.05


def body_fingerprint(body: dict[str, Any]) -> str:
    # Keyed (HMAC): the body may hold a user's credentials, and a plain hash of a short secret
    # could be brute-forced from a database dump.
    message = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def claim_once(*, owner_key: str, idempotency_key: str, body: dict[str, Any], claim: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Run `claim` at most once per (owner, key); returns (answer, replayed)."""
    fingerprint = body_fingerprint(body)
    deadline = time.monotonic() + settings.CLAIM_TIMEOUT_MS / 1000
    while True:
        try:
            with transaction.atomic(using=DB):
                request = ClaimRequest.objects.using(DB).create(owner_key=owner_key, idempotency_key=idempotency_key, body_hash=fingerprint)
        except IntegrityError:
            existing = ClaimRequest.objects.using(DB).filter(owner_key=owner_key, idempotency_key=idempotency_key).first()
            if existing is None:
                continue  # the first claim failed and gave the key back: take it now
            if existing.body_hash != fingerprint:
                raise Conflict("Idempotency-Key was already used with a different request body", code="idempotency_key_reused") from None
            if existing.state == ClaimRequest.State.SUCCEEDED:
                return existing.response, True
            if time.monotonic() > deadline:
                raise Conflict("A claim with this Idempotency-Key is still in progress", code="idempotency_in_progress") from None
            time.sleep(_POLL_S)
            continue
        try:
            answer = claim()
        except BaseException:
            ClaimRequest.objects.using(DB).filter(pk=request.pk).delete()
            raise
        ClaimRequest.objects.using(DB).filter(pk=request.pk).update(
            state=ClaimRequest.State.SUCCEEDED, instance_id=answer.get("instanceId", ""), response=answer
        )
        return answer, False
