"""API clients: created by operators (admin or CLI), each with a key shown once."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from convos.errors import NotFound
from pool_app.models import ApiClient

from pool_app.db import DB
KEY_PREFIX = "cvk_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedClient:
    client: ApiClient
    key: str  # the only time the key exists outside the caller's hands


def api_client_create(*, name: str, owner_id: str, rate_limit_per_minute: int | None = None) -> CreatedClient:
    if not name.strip() or not owner_id.strip():
        raise ValueError("name and owner id are required")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic(using=DB):
        client = ApiClient.objects.using(DB).create(
            name=name.strip(), owner_id=owner_id.strip(), key_prefix=key[:10], key_hash=key_hash(key),
            rate_limit_per_minute=rate_limit_per_minute,
        )
    return CreatedClient(client=client, key=key)


def api_client_revoke(*, client_id: int) -> ApiClient:
    client = ApiClient.objects.using(DB).filter(pk=client_id).first()
    if client is None:
        raise NotFound(f"No API client {client_id}")
    if client.revoked_at is None:
        client.revoked_at = timezone.now()
        client.save(using=DB, update_fields=["revoked_at"])
    return client


def api_client_for_key(key: str) -> ApiClient | None:
    """The active client holding `key`, or None. A hash lookup: keys are never compared in plaintext."""
    if not key.startswith(KEY_PREFIX):
        return None
    client = ApiClient.objects.using(DB).filter(key_hash=key_hash(key), revoked_at=None).first()
    if client is not None and (client.last_used_at is None or (timezone.now() - client.last_used_at).total_seconds() > 60):
        # At most one write a minute per client: this runs on every request.
        ApiClient.objects.using(DB).filter(pk=client.pk).update(last_used_at=timezone.now())
    return client
