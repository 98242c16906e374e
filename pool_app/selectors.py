"""Pool reads."""
from __future__ import annotations

from typing import Any

from django.db.models import Count

from pool_app.models import Instance, InstanceStatus

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


def pool_status() -> dict[str, Any]:
    return {"counts": pool_counts(), "instances": instance_list()}
