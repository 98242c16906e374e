"""What the admin's front page shows of the fleet: a few bounded queries, each on an index, so the
page stays fast with thousands of instances and a million events.

- counts per status (one GROUP BY), the idle target and POOL_MAX_TOTAL, the outage guard;
- the last ticks (newest 20 for the table, 60 for the chart: an indexed range on `at`);
- claims per hour over the last day (events to `claimed`, on the (to_status, created_at) index);
- each provider's last error and success (services, through the facade);
- the newest events (an indexed ORDER BY ... LIMIT).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from pool_app import selectors
from pool_app.config import pool_config
from pool_app.db import DB
from pool_app.models import InstanceEvent, InstanceStatus, TickRecord

TICK_ROWS = 20
CHART_TICKS = 60
EVENT_ROWS = 15


@dataclass(frozen=True)
class Chart:
    """A server-drawn SVG line chart (no script, no CDN): points in a 0..width x 0..height box."""

    width: int
    height: int
    duration_points: str
    idle_points: str
    max_duration_ms: float
    max_idle: int


def fleet_dashboard() -> dict[str, Any]:
    config = pool_config()
    state = selectors.pool_state()
    ticks = list(TickRecord.objects.using(DB).order_by("-at")[:max(TICK_ROWS, CHART_TICKS)])
    counts = selectors.pool_counts()
    return {
        "counts": list(counts.items()),
        "live": sum(counts.values()),
        "idle": counts.get(InstanceStatus.IDLE, 0),
        "min_idle": config.min_idle,
        "max_total": config.max_total,
        "paused": config.paused,
        "outage": state if state.outage else None,
        "last_tick_at": state.last_tick_at,
        "ticks": ticks[:TICK_ROWS],
        "chart": tick_chart(list(reversed(ticks[:CHART_TICKS]))),
        "claims_per_hour": claims_per_hour(),
        **_providers(),
        "events": list(InstanceEvent.objects.using(DB).order_by("-created_at", "-id")[:EVENT_ROWS]),
    }


def _providers() -> dict[str, Any]:
    providers = selectors.provider_errors()
    if isinstance(providers, dict):  # services did not answer: say so instead of a table
        return {"providers": [], "providers_error": f"Services did not answer: {providers.get('error')}"}
    return {"providers": providers}


def tick_chart(ticks: list[TickRecord], *, width: int = 600, height: int = 120) -> Chart | None:
    if len(ticks) < 2:
        return None
    max_ms = max(t.duration_ms for t in ticks) or 1.0
    max_idle = max(t.idle for t in ticks) or 1
    step = width / (len(ticks) - 1)

    def points(values: list[float], top: float) -> str:
        return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 4) - 2:.1f}" for i, v in enumerate(values))

    return Chart(width, height, points([t.duration_ms for t in ticks], max_ms), points([t.idle for t in ticks], max_idle),
                 round(max_ms, 1), max_idle)


def claims_per_hour(*, now=None) -> list[tuple[Any, int]]:
    """(hour, claims) for each of the last 24 hours, oldest first, zeros included."""
    now = now or timezone.now()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = (InstanceEvent.objects.using(DB)
            .filter(to_status__in=[InstanceStatus.CLAIMED, InstanceStatus.PENDING_ACCEPTANCE], created_at__gte=start,
                    from_status=InstanceStatus.CLAIMING)
            .annotate(hour=TruncHour("created_at")).values("hour").annotate(n=Count("id")))
    by_hour = {row["hour"]: row["n"] for row in rows}
    return [(start + timedelta(hours=h), by_hour.get(start + timedelta(hours=h), 0)) for h in range(24)]
