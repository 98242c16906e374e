"""What the pool records of signals other apps send (services never imports the pool)."""
from __future__ import annotations

from pool_app.models import Actor, Instance
from pool_app.transitions import record_event

from pool_app.db import DB


def record_self_provision(sender, *, instance_id: str, tool_id: str, outcome: str, detail: str, **_) -> None:
    """Every self-provisioning call, refused ones included, goes into the instance's event log."""
    status = Instance.objects.using(DB).filter(pk=instance_id).values_list("status", flat=True).first()
    if status is None:
        return
    record_event(instance_id=instance_id, from_status=status, to_status=status, actor=Actor.INSTANCE,
                 reason=f"self-provision {tool_id}: {outcome} ({detail})")
