"""Services' error type and the per-provider record of the last outcome."""
from __future__ import annotations

import logging
import time

from django.utils import timezone

from convos.errors import DomainError
from convos.redaction import redact
from services_app.models import ProviderStatus

logger = logging.getLogger(__name__)
from services_app.db import DB


class ServicesError(DomainError):
    """A services operation failed. `code` tells the caller what happened (e.g. `already_bound`)."""

    status_code = 502
    code = "services_failed"


def provider_failed(provider: str, message: str) -> str:
    """Record a provider's failure (redacted) and return the redacted message."""
    clean = redact(message)[:2000]
    try:
        ProviderStatus.objects.using(DB).update_or_create(
            provider=provider, defaults={"last_error": clean, "last_error_at": timezone.now()}
        )
    except Exception:  # recording must never hide the original failure
        logger.exception("could not record the failure of provider %s", provider)
    return clean


_last_ok_written: dict[str, float] = {}


def provider_ok(provider: str) -> None:
    # At most one write a minute per provider and process: this runs on every successful call.
    now = time.monotonic()
    if now - _last_ok_written.get(provider, -1e9) < 60:
        return
    _last_ok_written[provider] = now
    try:
        ProviderStatus.objects.using(DB).update_or_create(provider=provider, defaults={"last_ok_at": timezone.now()})
    except Exception:
        logger.exception("could not record the success of provider %s", provider)


def provider_statuses() -> list[dict]:
    return [
        {"provider": p.provider, "lastError": p.last_error, "lastErrorAt": p.last_error_at, "lastOkAt": p.last_ok_at}
        for p in ProviderStatus.objects.using(DB).order_by("provider")
    ]
