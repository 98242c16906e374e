"""The tick's orphan sweep step: at most every ORPHAN_SWEEP_MS, ask services for what the providers
hold under the pool's names that no row records (services_app/services/orphans.py does the work).

When it last ran is read from the tick history (TickRecord, the pool database), not from a cache:
every process that may run the tick (Celery workers, `manage.py tick`) sees the same answer, so
the listing (a full page-through of the Railway workspace and of each tool's account) runs at most
once per interval whoever ticks. A sweep that failed counts as a run too, so a provider whose
listing fails is not asked again every tick.

It runs while the pool is paused (reporting changes nothing) but then deletes nothing; it does not
run during an outage (services' view cannot be trusted, and orphans can wait one more interval).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from pool_app.config import PoolConfig
from pool_app.db import DB
from pool_app.models import TickRecord
from services_app import facade as services

logger = logging.getLogger(__name__)

STEP = "orphan_sweep"


class OrphanListingFailed(Exception):
    """Some provider's listing failed: the step's error in the tick report (the rest was swept)."""


def orphan_sweep_last_run() -> datetime | None:
    """When the sweep last ran (successfully or not), from the tick history."""
    return (TickRecord.objects.using(DB)
            .filter(Q(**{f"steps__{STEP}__ran": True}) | Q(errors__has_key=STEP))
            .order_by("-at").values_list("at", flat=True).first())


def orphan_sweep(config: PoolConfig) -> dict[str, Any]:
    """The tick step: `{"ran": False, ...}` between runs; otherwise the sweep's summary."""
    interval = timedelta(milliseconds=settings.ORPHAN_SWEEP_MS)
    if interval <= timedelta(0):
        return {"ran": False, "reason": "ORPHAN_SWEEP_MS=0: orphan sweep off"}
    last = orphan_sweep_last_run()
    now = timezone.now()
    if last is not None and now - last < interval:
        return {"ran": False, "nextInS": round((last + interval - now).total_seconds())}
    result = services.orphan_sweep(delete_allowed=not config.paused)
    providers = result.get("providers") or {}
    summary: dict[str, Any] = {
        "ran": True,
        "delete": bool(result.get("delete")),
        "orphans": {name: len(entry.get("orphans") or []) for name, entry in providers.items()},
        "deleted": {name: entry.get("deleted", 0) for name, entry in providers.items() if entry.get("deleted")},
        # The first few per provider: enough to find them, bounded in the tick history.
        "found": {name: [o.get("name") for o in (entry.get("orphans") or [])[:10]] for name, entry in providers.items() if entry.get("orphans")},
    }
    if result.get("errors"):
        failed = "; ".join(f"{name}: {message}" for name, message in sorted(result["errors"].items()))
        raise OrphanListingFailed(f"{failed} (swept otherwise: {summary['orphans']})")
    if any(summary["orphans"].values()):
        logger.warning("orphan sweep: %s", summary)
    return summary
