"""The pool's sizing and timing knobs as one value, read at the start of each tick or claim.

Operators override them in admin (PoolSettings, pool database); an empty override falls back to
the environment.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from pool_app.models import PoolSettings, PoolSettingsChange

from pool_app.db import DB
# PoolSettings field -> Django setting it overrides.
OVERRIDABLE = {
    "min_idle": "POOL_MIN_IDLE",
    "max_total": "POOL_MAX_TOTAL",
    "stuck_timeout_ms": "POOL_STUCK_TIMEOUT_MS",
    "create_concurrency": "POOL_CREATE_CONCURRENCY",
}


@dataclass(frozen=True)
class PoolConfig:
    min_idle: int
    max_total: int
    stuck_timeout: timedelta
    create_concurrency: int
    claim_timeout: timedelta
    protected_ids: frozenset[str]
    paused: bool = False
    outage_threshold: float = 0.5
    outage_min_instances: int = 3
    create_timeout: timedelta = timedelta(minutes=15)
    idle_audit_sample: int = 10
    max_reset_failures: int = 3


def pool_settings_get() -> PoolSettings:
    row = PoolSettings.objects.using(DB).filter(pk=1).first()
    return row or PoolSettings(pk=1)


def min_idle_sql() -> tuple[str, list[int]]:
    """The effective POOL_MIN_IDLE as a SQL expression, for a statement that needs it without a
    query of its own (the claim's reservation): the same rule as `pool_config`, the operator's
    override when set, else the setting."""
    meta = PoolSettings._meta
    return (f"COALESCE((SELECT {meta.get_field('min_idle').column} FROM {meta.db_table} WHERE {meta.pk.column} = 1), %s)",
            [settings.POOL_MIN_IDLE])  # the one row, pk=1, as `pool_settings_get` reads it


def pool_config() -> PoolConfig:
    row = pool_settings_get()

    def value(field: str) -> int:
        override = getattr(row, field)
        return override if override is not None else getattr(settings, OVERRIDABLE[field])

    return PoolConfig(
        min_idle=value("min_idle"),
        max_total=value("max_total"),
        stuck_timeout=timedelta(milliseconds=value("stuck_timeout_ms")),
        create_concurrency=max(1, value("create_concurrency")),
        claim_timeout=timedelta(milliseconds=settings.CLAIM_TIMEOUT_MS),
        protected_ids=frozenset(settings.PROTECTED_INSTANCES),
        paused=row.paused,
        outage_threshold=settings.POOL_OUTAGE_THRESHOLD,
        outage_min_instances=settings.POOL_OUTAGE_MIN_INSTANCES,
        create_timeout=timedelta(milliseconds=settings.POOL_CREATE_TIMEOUT_MS),
        idle_audit_sample=settings.POOL_IDLE_AUDIT_SAMPLE,
        max_reset_failures=max(1, settings.POOL_MAX_RESET_FAILURES),
    )


def pool_settings_update(*, changed_by: str, **values: Any) -> list[PoolSettingsChange]:
    """Apply overrides (None clears one) and log each changed field with who changed it."""
    unknown = set(values) - set(OVERRIDABLE) - {"paused"}
    if unknown:
        raise ValueError(f"Unknown pool settings: {', '.join(sorted(unknown))}")
    for name, value in values.items():  # the model's bounds, whichever door the change comes through
        if value is not None and name in OVERRIDABLE:
            try:
                PoolSettings._meta.get_field(name).run_validators(value)
            except ValidationError as exc:
                raise ValueError(f"{name}: {' '.join(exc.messages)}") from None
    with transaction.atomic(using=DB):
        row, _ = PoolSettings.objects.using(DB).select_for_update().get_or_create(pk=1)
        changes = []
        for field, new in values.items():
            old = getattr(row, field)
            if old == new:
                continue
            setattr(row, field, new)
            changes.append(PoolSettingsChange(field=field, old_value="" if old is None else str(old),
                                              new_value="" if new is None else str(new), changed_by=changed_by))
        if changes:
            row.save(using=DB)
            PoolSettingsChange.objects.using(DB).bulk_create(changes)
    return changes
