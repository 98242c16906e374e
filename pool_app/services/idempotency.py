"""Idempotent claims: the same Idempotency-Key and body return the same answer, once claimed.

The key is taken by inserting a row under a unique (owner, key) index, so of two concurrent
requests with one key exactly one claims; the other waits for that claim's answer and returns it.
A claim that fails gives its key back, so the client can retry with the same key; one whose
process died (still `in_progress` after CLAIM_TIMEOUT_MS) is taken over by the next request with
the key. Keys are kept CLAIM_REQUEST_TTL_HOURS (the tick prunes older ones). The stored answer is
the claim's plain answer (no QR image: the renderer draws one when asked).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from convos.errors import Conflict
from pool_app.models import ClaimRequest

from pool_app.db import DB
_POLL_S = 0.05


def body_fingerprint(body: dict[str, Any]) -> str:
    # Keyed (HMAC): the body may hold a user's credentials, and a plain hash of a short secret
    # could be brute-forced from a database dump.
    message = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def claim_once(*, owner_key: str, idempotency_key: str, body: dict[str, Any], claim: Callable[[], Any]) -> tuple[Any, bool]:
    """Run `claim` at most once per (owner, key). Returns (what `claim` returned, False), or (the
    stored answer dict, True) for a repeat. `claim` returns a result with `instance_id` and
    `as_dict()` (the claim's ClaimResult)."""
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
            if existing.created_at < timezone.now() - timedelta(milliseconds=settings.CLAIM_TIMEOUT_MS):
                # Its process died mid-claim (the tick recovers that instance): take the key over,
                # conditionally, so of two retries only one claims.
                stamp = timezone.now()
                if ClaimRequest.objects.using(DB).filter(pk=existing.pk, state=ClaimRequest.State.IN_PROGRESS,
                                                         created_at=existing.created_at).update(created_at=stamp):
                    request, request.created_at = existing, stamp
                    break
                continue
            if time.monotonic() > deadline:
                raise Conflict("A claim with this Idempotency-Key is still in progress", code="idempotency_in_progress") from None
            time.sleep(_POLL_S)
            continue
        break
    # Only while the key is still ours (created_at is the stamp of whoever holds it): a claim that
    # outlived CLAIM_TIMEOUT_MS and was taken over must not delete or overwrite its successor's row.
    mine = ClaimRequest.objects.using(DB).filter(pk=request.pk, created_at=request.created_at)
    try:
        result = claim()
    except BaseException:
        mine.delete()
        raise
    mine.update(state=ClaimRequest.State.SUCCEEDED, instance_id=result.instance_id, response=result.as_dict())
    return result, False


def claim_requests_prune() -> int:
    """Forget Idempotency-Keys older than CLAIM_REQUEST_TTL_HOURS (a tick step): they hold invite
    URLs, which should not be kept for ever."""
    cutoff = timezone.now() - timedelta(hours=settings.CLAIM_REQUEST_TTL_HOURS)
    deleted, _ = ClaimRequest.objects.using(DB).filter(created_at__lt=cutoff).delete()
    return deleted
