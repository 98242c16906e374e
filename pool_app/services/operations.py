"""Operator actions. Each is one function shared by its REST endpoint, admin action and command.

Destructive ones take `dry_run`: they then report what they would do and change nothing.
Protected instances (admin flag or PROTECTED_INSTANCES) are never drained or destroyed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from convos.concurrency import map_concurrently
from convos.errors import Conflict, NotFound, UpstreamFailed
from convos.log_format import logs_for_instance
from pool_app.config import pool_config
from pool_app.models import Instance, InstanceStatus
from pool_app.services.fleet import instance_destroy, instances_create
from pool_app.services.tick import Outage, apply_reported_binding, observe  # the tick's own observation, for one instance
from pool_app.transitions import record_event, transition
from services_app import facade as services

logger = logging.getLogger(__name__)
from pool_app.db import DB


# Replenish and drain run inside a web request when they come from the API or admin: a bounded
# count keeps one request's work bounded (each create or destroy has its provider's timeout).
# Larger batches go through the CLI, or several requests.
MAX_PER_REQUEST = 100


@dataclass
class OperationResult:
    action: str
    dry_run: bool = False
    instance_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "dryRun": self.dry_run, "instanceIds": self.instance_ids, "failed": self.failed, "note": self.note}


def _get(instance_id: str) -> Instance:
    instance = Instance.objects.using(DB).filter(pk=instance_id).exclude(status=InstanceStatus.DELETED).first()
    if instance is None:
        raise NotFound(f"No live instance {instance_id}")
    return instance


def pool_replenish(*, count: int, actor: str) -> OperationResult:
    """Create `count` instances now, within the cap on unclaimed instances."""
    config = pool_config()
    live = Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED)
    room = max(0, config.max_total - live.filter(claimed_at=None).exclude(status=InstanceStatus.CLAIMING).count())
    allowed = min(count, room)
    created = instances_create(count=allowed, actor=actor, concurrency=config.create_concurrency)
    note = f"capped by POOL_MAX_TOTAL={config.max_total}" if allowed < count else ""
    return OperationResult("replenish", instance_ids=created, note=note)


def pool_drain(*, count: int, actor: str, dry_run: bool = False) -> OperationResult:
    """Destroy up to `count` idle instances, oldest first (never protected ones)."""
    # What drain takes is what a claim could take: instances still owed a reset are the cleanse's.
    candidates = list(Instance.objects.using(DB).claimable().order_by("created_at")[: max(count, 0)])
    result = OperationResult("drain", dry_run=dry_run)
    if dry_run:
        result.instance_ids = [i.pk for i in candidates]
        return result
    for instance in candidates:
        # instance_destroy owns the row first (idle -> destroying, conditional), so no claim gets
        # it meanwhile; a destroy that then fails stays `destroying`, which the tick retries.
        if instance_destroy(instance_id=instance.pk, actor=actor, reason="drained by operator"):
            result.instance_ids.append(instance.pk)
        elif Instance.objects.using(DB).filter(pk=instance.pk, status=InstanceStatus.DESTROYING).exists():
            result.failed[instance.pk] = Instance.objects.using(DB).get(pk=instance.pk).last_error or "destroy failed"
    return result


@logs_for_instance
def instance_destroy_one(*, instance_id: str, actor: str, dry_run: bool = False) -> OperationResult:
    """Destroy one instance, claimed or not (an operator's decision); protected ones are refused."""
    instance = _get(instance_id)
    if instance.is_protected:
        raise Conflict(f"Instance {instance_id} is protected", code="protected")
    if instance.status in (InstanceStatus.CLAIMING, InstanceStatus.RESETTING):
        doing = "claimed" if instance.status == InstanceStatus.CLAIMING else "reset"
        raise Conflict(f"Instance {instance_id} is being {doing}; retry in a moment", code=instance.status)
    result = OperationResult("destroy", dry_run=dry_run, instance_ids=[instance_id])
    if dry_run:
        return result
    if not instance_destroy(instance_id=instance_id, actor=actor, reason="destroyed by operator"):
        result.instance_ids = []
        result.failed[instance_id] = Instance.objects.using(DB).get(pk=instance_id).last_error or "status changed meanwhile"
    return result


def _redeploy(instance: Instance, *, actor: str) -> str | None:
    """Redeploy one instance; an idle one goes back to `starting` so it is not claimed mid-restart."""
    if instance.status == InstanceStatus.IDLE:
        if not transition(instance.pk, from_status=InstanceStatus.IDLE, to_status=InstanceStatus.STARTING, actor=actor,
                          reason="redeploy requested"):
            return "no longer idle"
    else:  # no status change, but the log still says who restarted it and when
        record_event(instance_id=instance.pk, from_status=instance.status, to_status=instance.status, reason="redeploy requested", actor=actor)
    try:
        services.redeploy(instance.pk)
    except services.ServicesError as exc:
        Instance.objects.using(DB).filter(pk=instance.pk).update(last_error=exc.message)
        return exc.message
    Instance.objects.using(DB).filter(pk=instance.pk).update(unhealthy_since=timezone.now())
    return None


@logs_for_instance
def instance_redeploy_one(*, instance_id: str, actor: str) -> OperationResult:
    instance = _get(instance_id)
    if instance.status == InstanceStatus.CLAIMING:
        raise Conflict(f"Instance {instance_id} is being claimed; retry in a moment", code="claiming")
    error = _redeploy(instance, actor=actor)
    return OperationResult("redeploy", instance_ids=[] if error else [instance_id], failed={instance_id: error} if error else {})


def pool_redeploy_idle(*, actor: str, dry_run: bool = False) -> OperationResult:
    """Redeploy every idle instance (new image pull); claimed ones are left as they are."""
    idle = list(Instance.objects.using(DB).filter(status=InstanceStatus.IDLE))
    result = OperationResult("redeploy_idle", dry_run=dry_run)
    if dry_run:
        result.instance_ids = [i.pk for i in idle]
        return result
    errors = map_concurrently(lambda i: _redeploy(i, actor=actor), idle, max_workers=pool_config().create_concurrency)
    for instance, error in zip(idle, errors):
        if error:
            result.failed[instance.pk] = error
        else:
            result.instance_ids.append(instance.pk)
    return result


@logs_for_instance
def instance_chat(*, instance_id: str, text: str, actor: str, sender_name: str = "operator") -> list[str]:
    """Send a message to a claimed agent and return its replies (through services, which keeps the
    gateway token). Works for agents on the loopback channel; a Convos agent is talked to in Convos.
    The event log records that someone talked to the agent (not what was said)."""
    instance = _get(instance_id)
    if instance.status not in (InstanceStatus.CLAIMED, InstanceStatus.PENDING_ACCEPTANCE):
        raise Conflict(f"Instance {instance_id} is {instance.status}: only a claimed agent can be talked to", code="not_claimed")
    record_event(instance_id=instance_id, from_status=instance.status, to_status=instance.status, actor=actor,
                 reason=f"{sender_name} sent the agent a message")
    try:
        return services.chat(instance_id, text, sender_name=sender_name)["replies"]
    except services.ServicesError as exc:
        if exc.status_code == 409:
            raise Conflict(exc.message, code=exc.code) from exc
        raise UpstreamFailed(exc.message, code=exc.code) from exc


@logs_for_instance
def pending_acceptance_complete(*, instance_id: str, actor: str) -> Instance:
    """The instance says the owner accepted its pending join: check what it holds now (its own
    `/convos/status`, the tick's rule) instead of waiting for the next tick."""
    instance = _pending(instance_id)
    try:
        reported = services.convos_status(instance_id)
    except services.ServicesError as exc:
        raise UpstreamFailed(exc.message, code="status_failed") from exc
    if apply_reported_binding(instance, reported, actor=actor) is None and reported.get("pending"):
        raise Conflict(f"Instance {instance_id} still reports its join as pending", code="still_pending")
    return _get(instance_id)


@logs_for_instance
def pending_acceptance_fail(*, instance_id: str, reason: str, actor: str) -> Instance:
    """The instance says its pending join failed: it holds no conversation of its claim, so it is
    `tainted` (an operator, or the claim's owner, decides what happens next)."""
    _pending(instance_id)
    if not transition(instance_id, from_status=InstanceStatus.PENDING_ACCEPTANCE, to_status=InstanceStatus.TAINTED, actor=actor,
                      reason=f"the instance reports its join failed: {reason or 'no reason given'}"[:500]):
        raise Conflict(f"Instance {instance_id} changed status meanwhile; retry", code="status_changed")
    return _get(instance_id)


def _pending(instance_id: str) -> Instance:
    instance = _get(instance_id)
    if instance.status != InstanceStatus.PENDING_ACCEPTANCE:
        raise Conflict(f"Instance {instance_id} is not waiting for acceptance (it is {instance.status})", code="not_pending")
    return instance


@logs_for_instance
def instance_recheck(*, instance_id: str, actor: str) -> Instance:
    """Ask services about one instance now and apply the answer, as the tick would."""

    instance = _get(instance_id)
    try:
        observe([instance], pool_config(), actor=actor, guard=False)
    except Outage as exc:
        raise UpstreamFailed(str(exc), code="status_failed") from exc
    return Instance.objects.using(DB).get(pk=instance_id)
