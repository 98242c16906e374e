"""Pool reads."""
from __future__ import annotations

from typing import Any

from django.db.models import Count

from pool_app.config import pool_config
from pool_app.models import Instance, InstanceStatus, PoolState
from services_app import facade as services

DB = "pool"


def pool_counts() -> dict[str, int]:
    """Instances per status, every status present (0 when none), deleted ones left out."""
    counts = {status: 0 for status in InstanceStatus.values if status != InstanceStatus.DELETED}
    rows = Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED).values("status").annotate(n=Count("pk"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def instance_list(*, include_deleted: bool = False) -> list[Instance]:
    qs = Instance.objects.using(DB).all()
    if not include_deleted:
        qs = qs.exclude(status=InstanceStatus.DELETED)
    return list(qs.order_by("created_at"))


def pool_state() -> PoolState:
    return PoolState.objects.using(DB).filter(pk=1).first() or PoolState(pk=1)


def pool_status() -> dict[str, Any]:
    state = pool_state()
    config = pool_config()
    return {
        "counts": pool_counts(),
        "outage": {"active": state.outage, "reason": state.outage_reason, "since": state.outage_since},
        "last_tick": {"at": state.last_tick_at, "report": state.last_tick_report},
        "settings": {
            "minIdle": config.min_idle,
            "maxTotal": config.max_total,
            "stuckTimeoutMs": int(config.stuck_timeout.total_seconds() * 1000),
            "createConcurrency": config.create_concurrency,
            "paused": config.paused,
        },
        "providers": provider_errors(),
        "instances": instance_list(),
    }


def provider_errors() -> list[dict[str, Any]] | dict[str, str]:
    """Last outcome per provider, as services records it (redacted there)."""
    try:
        return services.provider_statuses()
    except services.ServicesError as exc:
        return {"error": exc.message}
