"""The pool's sizing and timing knobs as one value, read at the start of each tick or claim."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings


@dataclass(frozen=True)
class PoolConfig:
    min_idle: int
    max_total: int
    stuck_timeout: timedelta
    create_concurrency: int
    claim_timeout: timedelta
    protected_ids: frozenset[str]


def pool_config() -> PoolConfig:
    return PoolConfig(
        min_idle=settings.POOL_MIN_IDLE,
        max_total=settings.POOL_MAX_TOTAL,
        stuck_timeout=timedelta(milliseconds=settings.POOL_STUCK_TIMEOUT_MS),
        create_concurrency=max(1, settings.POOL_CREATE_CONCURRENCY),
        claim_timeout=timedelta(milliseconds=settings.CLAIM_TIMEOUT_MS),
        protected_ids=frozenset(settings.PROTECTED_INSTANCES),
    )
