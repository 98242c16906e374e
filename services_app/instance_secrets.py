"""Per-instance secrets, generated at creation and never stored in plaintext by services.

- The gateway token (the instance's bearer for /pool/provision and /convos/*) is an HMAC of the
  instance id and a random per-instance nonce under INSTANCE_SECRET_KEY. Services can recompute it
  whenever it must call the instance, so the database only holds the nonce; rotating a token is a
  new nonce plus a redeploy.
- The instance services token (runtime -> services self-provision) is random; only its SHA-256 is
  kept, which is all that is needed to check it.
Both are handed to the infra provider once, as the instance's environment variables.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings


def new_nonce() -> str:
    return secrets.token_hex(16)


def gateway_token(*, instance_id: str, nonce: str) -> str:
    digest = hmac.new(settings.INSTANCE_SECRET_KEY.encode(), f"gateway:{instance_id}:{nonce}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def new_services_token() -> str:
    return "ist_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, expected_hash: str) -> bool:
    return bool(expected_hash) and hmac.compare_digest(token_hash(token), expected_hash)
