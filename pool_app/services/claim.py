"""The claim: the one function that hands an idle instance to a client.

API, admin and CLI all call `instance_claim`; nothing else moves an instance out of `idle`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from convos.errors import Conflict, Unavailable, UpstreamFailed
from pool_app.models import Instance, InstanceStatus
from pool_app.qr import qr_data_url
from pool_app.transitions import transition
from services_app import facade as services

logger = logging.getLogger(__name__)
DB = "pool"
_RESERVE_ATTEMPTS = 5
_BOUND_RETRIES = 3
# Statuses in which an instance holds its joinUrl (mirrors the partial unique index on join_url).
_HOLDS_JOIN_URL = (InstanceStatus.CLAIMING, InstanceStatus.CLAIMED, InstanceStatus.PENDING_ACCEPTANCE)


@dataclass(frozen=True)
class ClaimResult:
    instance_id: str
    agent_name: str
    invite_url: str | None
    conversation_id: str | None
    joined: bool
    status: str
    provision_ms: float = field(default=0.0, compare=False)  # the instance's provisioning call (Server-Timing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "agentName": self.agent_name,
            "inviteUrl": self.invite_url,
            "conversationId": self.conversation_id,
            "joined": self.joined,
            "status": self.status,
            "qrDataUrl": qr_data_url(self.invite_url) if self.invite_url else None,
        }


def _reserve_idle_instance(*, actor: str, join_url: str | None, skip: frozenset[str] = frozenset()) -> Instance | None:
    """Move the oldest claimable idle instance to `claiming` and return it (None: nothing idle).

    On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets concurrent claims pick different rows without
    waiting on each other. SQLite has no row locks (Django drops the clause there); its IMMEDIATE
    transactions serialise claims instead. On both, the conditional update in `transition` is
    what guarantees that one instance is never reserved twice, and the partial unique index on
    join_url that one conversation is never claimed twice.
    """
    protected = frozenset(settings.PROTECTED_INSTANCES) | skip
    for attempt in range(_RESERVE_ATTEMPTS):
        with transaction.atomic(using=DB):
            idle = Instance.objects.using(DB).filter(status=InstanceStatus.IDLE, protected=False).exclude(pk__in=protected)
            candidate = idle.select_for_update(skip_locked=True).order_by("created_at").first()
            if candidate is None:
                # Every idle row may be locked for an instant by another claim's reservation:
                # only answer "none" when there is really none.
                if attempt + 1 < _RESERVE_ATTEMPTS and idle.exists():
                    time.sleep(0.01 * (attempt + 1))
                    continue
                return None
            try:
                with transaction.atomic(using=DB):
                    reserved = transition(
                        candidate.pk, from_status=InstanceStatus.IDLE, to_status=InstanceStatus.CLAIMING, actor=actor,
                        reason="claim started", claim_started_at=timezone.now(), join_url=join_url or "",
                    )
            except IntegrityError:
                raise Conflict("This joinUrl is already being claimed or claimed", code="join_url_in_use") from None
            if reserved:
                return candidate
    return None


def claim_recover(instance_id: str, *, reason: str, actor: str, already_bound: bool = False) -> str:
    """Put an instance whose claim failed (or died) back where it is safe (reference section 2).

    A 409 from the instance means it is already bound: its state is not ours to touch, so it goes
    back to idle with nothing reset. Otherwise the instance is factory-reset and returns to `idle`
    only if it then reports itself clean; anything else is `crashed`, so a half-provisioned agent
    is never handed out.
    """
    if already_bound:
        transition(instance_id, from_status=InstanceStatus.CLAIMING, to_status=InstanceStatus.IDLE, actor=actor,
                   reason=f"{reason}; instance refused (409), left as it was", last_error=reason, join_url="", claim_started_at=None)
        return InstanceStatus.IDLE
    try:
        clean = services.reset(instance_id).get("clean") is True
        if clean:
            # Ask again rather than trust the reset's own answer: this is what a new claimer gets.
            clean = services.convos_status(instance_id).get("clean") is True
    except services.ServicesError as reset_error:
        logger.warning("reset of %s after a failed claim failed: %s", instance_id, reset_error.message)
        clean = False
    to_status = InstanceStatus.IDLE if clean else InstanceStatus.CRASHED
    transition(
        instance_id, from_status=InstanceStatus.CLAIMING, to_status=to_status, actor=actor,
        reason=f"{reason}; reset {'clean' if clean else 'not clean'}",
        last_error=reason, claim_started_at=None, join_url="",
    )
    return to_status


def instance_claim(*, agent_name: str, instructions: str, join_url: str | None = None, owner_id: str = "", actor: str = "api") -> ClaimResult:
    if join_url and Instance.objects.using(DB).filter(join_url=join_url, status__in=_HOLDS_JOIN_URL).exists():
        raise Conflict("This joinUrl is already being claimed or claimed", code="join_url_in_use")
    tried: set[str] = set()
    while True:
        instance = _reserve_idle_instance(actor=actor, join_url=join_url, skip=frozenset(tried))
        if instance is None:
            raise Unavailable("No idle instance is available right now; the pool is refilling, retry shortly", code="no_idle_instance")
        started = time.perf_counter()
        try:
            answer = services.configure(instance.pk, agent_name=agent_name, instructions=instructions, join_url=join_url)
            provision_ms = (time.perf_counter() - started) * 1000
            break
        except services.ServicesError as exc:
            bound = exc.code == "already_bound"
            claim_recover(instance.pk, reason=f"provision failed: {exc.message}", actor=actor, already_bound=bound)
            tried.add(instance.pk)
            # An instance that says it is already bound was not really idle: try another one.
            if not bound or len(tried) >= _BOUND_RETRIES:
                raise UpstreamFailed(f"Provisioning instance {instance.pk} failed: {exc.message}", code="provision_failed") from exc

    pending = answer.get("status") == "pending_acceptance"
    to_status = InstanceStatus.PENDING_ACCEPTANCE if pending else InstanceStatus.CLAIMED
    claimed = transition(
        instance.pk, from_status=InstanceStatus.CLAIMING, to_status=to_status, actor=actor,
        reason=f"claimed as {agent_name!r}" + (" (join pending acceptance)" if pending else ""),
        agent_name=agent_name, instructions=instructions,
        conversation_id=answer.get("conversationId") or "", invite_url=answer.get("inviteUrl") or "",
        owner_id=owner_id, claimed_at=timezone.now(), last_error="",
    )
    if not claimed:
        # Only the tick's recovery of a claim older than CLAIM_TIMEOUT_MS moves a `claiming`
        # instance; it has been reset since, so handing it out now would be a lie.
        logger.error("claim of %s finished after it was recovered; not handing it out", instance.pk)
        raise UpstreamFailed(f"Claim of instance {instance.pk} timed out", code="claim_timed_out")
    return ClaimResult(
        instance_id=instance.pk,
        agent_name=agent_name,
        invite_url=answer.get("inviteUrl"),
        conversation_id=answer.get("conversationId"),
        joined=bool(answer.get("joined")),
        status=answer.get("status") or "created",
        provision_ms=provision_ms,
    )
