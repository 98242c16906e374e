"""Pool reads."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from convos.errors import NotFound
from pool_app.config import pool_config
from pool_app.models import Instance, InstanceStatus, PoolState
from services_app import facade as services

from pool_app.db import DB


def pool_counts() -> dict[str, int]:
    """Instances per status, every status present (0 when none), deleted ones left out."""
    counts = {status: 0 for status in InstanceStatus.values if status != InstanceStatus.DELETED}
    rows = Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED).values("status").annotate(n=Count("pk"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def instance_list(*, include_deleted: bool = False, owner_id: str | None = None) -> list[Instance]:
    return list(instance_queryset(include_deleted=include_deleted, owner_id=owner_id))


def instance_queryset(*, include_deleted: bool = False, owner_id: str | None = None, status: str | None = None) -> QuerySet:
    """Instances a viewer may see, oldest first: all of them for the operator (`owner_id` None),
    only its own for an API client (an empty owner id sees nothing)."""
    qs = Instance.objects.using(DB).all()
    if owner_id is not None:
        qs = qs.filter(owner_id=owner_id) if owner_id else qs.none()
    if status is not None:
        qs = qs.filter(status=status)
    elif not include_deleted:
        qs = qs.exclude(status=InstanceStatus.DELETED)
    return qs.order_by("created_at", "id")


def instance_get(*, instance_id: str, owner_id: str | None = None) -> Instance:
    """One instance the viewer may see; another owner's instance does not exist for them (404)."""
    instance = instance_queryset(include_deleted=True, owner_id=owner_id).filter(pk=instance_id).first()
    if instance is None:
        raise NotFound(f"No instance {instance_id}")
    return instance


def pool_state() -> PoolState:
    return PoolState.objects.using(DB).filter(pk=1).first() or PoolState(pk=1)


def pool_status(*, owner_id: str | None = None) -> dict[str, Any]:
    """The pool as the operator sees it. With `owner_id` (an API client), the pool as that client
    sees it: the counts, whether there is an outage, and its own instances; the tick report, the
    settings and providers' errors are fleet-wide, for operators only (and are not even read)."""
    state = pool_state()
    if owner_id is not None:
        return {"counts": pool_counts(), "outage": {"active": state.outage, "since": state.outage_since},
                "instances": instance_list(owner_id=owner_id)}
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
        "instances": instance_list(owner_id=owner_id),
    }


def provider_errors() -> list[dict[str, Any]] | dict[str, str]:
    """Last outcome per provider, as services records it (redacted there)."""
    try:
        return services.provider_statuses()
    except services.ServicesError as exc:
        return {"error": exc.message}


def instance_counts_by_template(template_ids: list[str]) -> dict[str, int]:
    """Live instances claimed from each template (for the templates admin)."""
    rows = (
        Instance.objects.using(DB).filter(template_id__in=template_ids).exclude(status=InstanceStatus.DELETED)
        .values("template_id").annotate(n=Count("pk"))
    )
    return {row["template_id"]: row["n"] for row in rows}


def instances_of_template(template_id: str) -> list[Instance]:
    return list(Instance.objects.using(DB).filter(template_id=template_id).exclude(status=InstanceStatus.DELETED).defer("instructions"))
