"""`pool_tick()`: one pass over the fleet, as a list of small isolated steps.

Each step logs and records its own failure; the others still run (the production pool lost whole
ticks to one failing step). Steps read fresh state, so each is idempotent and a repeated tick is
harmless.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

from convos.concurrency import map_concurrently
from convos.redaction import redact
from pool_app.config import PoolConfig, pool_config
from pool_app.models import CLAIMED_STATUSES, Actor, Instance, InstanceStatus
from pool_app.services.fleet import CREATING, instance_destroy, instances_create
from pool_app.status_derivation import derive_status
from pool_app.transitions import transition
from services_app import facade as services

logger = logging.getLogger(__name__)
DB = "pool"

# The tick never moves these: a claim in progress owns its instance; deleted is final.
_UNTOUCHED = frozenset({InstanceStatus.CLAIMING, InstanceStatus.DELETED})


@dataclass
class TickReport:
    started_at: float = field(default_factory=time.monotonic)
    steps: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "errors": self.errors, "durationMs": round(self.duration_ms, 1)}


def _observe(instances: list[Instance], config: PoolConfig) -> dict[str, Any]:
    """Ask services once for the whole fleet and apply what it says."""
    watched = [i for i in instances if i.status not in _UNTOUCHED and i.deploy_status != CREATING]
    if not watched:
        return {"checked": 0, "transitions": 0}
    observed = services.status_batch([i.pk for i in watched])
    now = timezone.now()
    healthy_ids: list[str] = []
    unhealthy_ids: list[str] = []
    by_deploy_status: dict[str, list[str]] = defaultdict(list)
    moved = 0
    for instance in watched:
        seen = observed.get(instance.pk) or {"status": "not_found", "deployStatus": None, "healthy": False, "url": ""}
        # Services has no record of it: for the pool that is a removed deployment.
        deploy_status = "REMOVED" if seen["status"] == "not_found" else seen.get("deployStatus")
        healthy = bool(seen.get("healthy"))
        (healthy_ids if healthy else unhealthy_ids).append(instance.pk)
        if instance.deploy_status != seen["status"]:
            by_deploy_status[seen["status"]].append(instance.pk)
        if seen.get("url") and seen["url"] != instance.url:
            Instance.objects.using(DB).filter(pk=instance.pk).update(url=seen["url"])
        unhealthy_for = (now - instance.unhealthy_since) if (not healthy and instance.unhealthy_since) else timedelta(0)
        target = derive_status(
            deploy_status=deploy_status,
            healthy=healthy,
            unhealthy_for=unhealthy_for,
            # Claimed-ness is a fact of the instance, not of its current status: a claimed
            # instance that slept or crashed is still someone's agent when it comes back.
            claimed=instance.claimed_at is not None,
            stuck_timeout=config.stuck_timeout,
        )
        if target == InstanceStatus.CLAIMED and instance.status in CLAIMED_STATUSES - {InstanceStatus.CRASHED}:
            target = instance.status  # keep pending_acceptance / tainted: only the instance resolves those
        if target != instance.status and transition(
            instance.pk, from_status=instance.status, to_status=target, actor=Actor.TICK,
            reason=f"services reported {seen['status']} (deploy {seen.get('deployStatus') or 'unknown'})",
        ):
            moved += 1
    # A handful of set-based writes instead of one UPDATE per instance.
    Instance.objects.using(DB).filter(pk__in=healthy_ids).update(last_healthy_at=now, unhealthy_since=None)
    Instance.objects.using(DB).filter(pk__in=unhealthy_ids, unhealthy_since__isnull=True).update(unhealthy_since=now)
    for value, ids in by_deploy_status.items():
        Instance.objects.using(DB).filter(pk__in=ids).update(deploy_status=value)
    return {"checked": len(watched), "transitions": moved}


def _remove_dead(config: PoolConfig) -> dict[str, Any]:
    """Destroy unclaimed instances that are dead or stuck; their places are refilled by top-up."""
    doomed = list(
        Instance.objects.using(DB)
        .filter(status__in=[InstanceStatus.DEAD, InstanceStatus.STUCK], protected=False)
        .exclude(pk__in=config.protected_ids)
        .values_list("pk", "status")
    )
    destroyed = map_concurrently(
        lambda row: instance_destroy(instance_id=row[0], actor=Actor.TICK, reason=f"replacing {row[1]} instance"),
        doomed,
        max_workers=config.create_concurrency,
    )
    return {"destroyed": sum(destroyed), "failed": len(doomed) - sum(destroyed)}


def _top_up(config: PoolConfig) -> dict[str, Any]:
    """Create instances until idle + starting reaches POOL_MIN_IDLE, within POOL_MAX_TOTAL."""
    live = Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED)
    ready_or_coming = live.filter(status__in=[InstanceStatus.IDLE, InstanceStatus.STARTING]).count()
    unclaimed = live.filter(claimed_at__isnull=True).exclude(status=InstanceStatus.CLAIMING).count()
    deficit = config.min_idle - ready_or_coming
    room = config.max_total - unclaimed
    count = max(0, min(deficit, room))
    if deficit > 0 and room < deficit:
        logger.warning("pool wants %d more instances but POOL_MAX_TOTAL=%d allows %d", deficit, config.max_total, max(room, 0))
    created = instances_create(count=count, actor=Actor.TICK, concurrency=config.create_concurrency)
    return {"deficit": max(deficit, 0), "requested": count, "created": len(created)}


def pool_tick() -> dict[str, Any]:
    """Run every step once and report what each did (or why it failed)."""
    config = pool_config()
    report = TickReport()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("observe", lambda: _observe(list(Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED)), config)),
        ("remove_dead", lambda: _remove_dead(config)),
        ("top_up", lambda: _top_up(config)),
    ]
    for name, step in steps:
        try:
            report.steps[name] = step()
        except Exception as exc:  # isolate steps: log, record, carry on with the next one
            logger.exception("tick step %s failed", name)
            report.errors[name] = redact(f"{exc.__class__.__name__}: {exc}")
    report.duration_ms = (time.monotonic() - report.started_at) * 1000
    logger.info("tick done in %.0f ms: %s", report.duration_ms, report.steps)
    return report.as_dict()
