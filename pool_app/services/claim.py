"""The claim: the one function that hands an idle instance to a client.

API, admin and CLI all call `instance_claim`; nothing else moves an instance out of `idle`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from convos.errors import Unavailable, UpstreamFailed
from pool_app.config import pool_config
from pool_app.models import Instance, InstanceStatus
from pool_app.transitions import transition
from services_app import facade as services

logger = logging.getLogger(__name__)
DB = "pool"
_RESERVE_ATTEMPTS = 5
_BOUND_RETRIES = 3


@dataclass(frozen=True)
class ClaimResult:
    instance_id: str
    agent_name: str
    invite_url: str | None
    conversation_id: str | None
    joined: bool
    status: str
    provision_ms: float = 0.0  # time spent in the instance's provisioning call (Server-Timing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "agentName": self.agent_name,
            "inviteUrl": self.invite_url,
            "conversationId": self.conversation_id,
            "joined": self.joined,
            "status": self.status,
        }


def _reserve_idle_instance(*, actor: str, skip: frozenset[str] = frozenset()) -> Instance | None:
    """Move the oldest claimable idle instance to `claiming` and return it (None: nothing idle).

    On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets concurrent claims pick different rows without
    waiting on each other. SQLite has no row locks (Django drops the clause there); its IMMEDIATE
    transactions serialise claims instead. On both, the conditional update in `transition` is
    what guarantees that one instance is never reserved twice.
    """
    protected = pool_config().protected_ids
    for _ in range(_RESERVE_ATTEMPTS):
        with transaction.atomic(using=DB):
            candidate = (
                Instance.objects.using(DB)
                .select_for_update(skip_locked=True)
                .filter(status=InstanceStatus.IDLE, protected=False)
                .exclude(pk__in=protected | skip)
                .order_by("created_at")
                .first()
            )
            if candidate is None:
                return None
            if transition(
                candidate.pk,
                from_status=InstanceStatus.IDLE,
                to_status=InstanceStatus.CLAIMING,
                actor=actor,
                reason="claim started",
                claim_started_at=timezone.now(),
            ):
                return candidate
    return None


def _recover_failed_claim(instance_id: str, error: services.ServicesError, *, actor: str) -> str:
    """Put an instance whose provisioning failed back where it is safe (reference section 2).

    A 409 means the instance is already bound: its state is not ours to touch, so it goes back to
    its status before the claim with nothing reset. Otherwise the instance is factory-reset and
    returns to `idle` only if it then reports itself clean; anything else is `crashed`, so a
    half-provisioned agent is never handed out.
    """
    if error.code == "already_bound":
        transition(instance_id, from_status=InstanceStatus.CLAIMING, to_status=InstanceStatus.IDLE, actor=actor,
                   reason=f"provision refused (409), left as it was: {error.message}", last_error=error.message)
        return InstanceStatus.IDLE
    try:
        status = services.reset(instance_id)
        clean = status.get("clean") is True
        if clean:
            # Ask again rather than trust the reset's own answer: this is what a new claimer gets.
            clean = services.convos_status(instance_id).get("clean") is True
    except services.ServicesError as reset_error:
        logger.warning("reset of %s after a failed claim failed: %s", instance_id, reset_error.message)
        clean = False
    to_status = InstanceStatus.IDLE if clean else InstanceStatus.CRASHED
    transition(
        instance_id, from_status=InstanceStatus.CLAIMING, to_status=to_status, actor=actor,
        reason=f"provision failed ({error.message}); reset {'clean' if clean else 'not clean'}",
        last_error=error.message, claim_started_at=None,
    )
    return to_status


def instance_claim(*, agent_name: str, instructions: str, join_url: str | None = None, owner_id: str = "", actor: str = "api") -> ClaimResult:
    tried: set[str] = set()
    while True:
        instance = _reserve_idle_instance(actor=actor, skip=frozenset(tried))
        if instance is None:
            raise Unavailable("No idle instance is available right now; the pool is refilling, retry shortly", code="no_idle_instance")
        started = time.perf_counter()
        try:
            answer = services.configure(instance.pk, agent_name=agent_name, instructions=instructions, join_url=join_url)
            provision_ms = (time.perf_counter() - started) * 1000
            break
        except services.ServicesError as exc:
            _recover_failed_claim(instance.pk, exc, actor=actor)
            tried.add(instance.pk)
            # An instance that says it is already bound was not really idle: try another one.
            if exc.code != "already_bound" or len(tried) >= _BOUND_RETRIES:
                raise UpstreamFailed(f"Provisioning instance {instance.pk} failed: {exc.message}", code="provision_failed") from exc

    pending = answer.get("status") == "pending_acceptance"
    to_status = InstanceStatus.PENDING_ACCEPTANCE if pending else InstanceStatus.CLAIMED
    claimed = transition(
        instance.pk, from_status=InstanceStatus.CLAIMING, to_status=to_status, actor=actor,
        reason=f"claimed as {agent_name!r}" + (" (join pending acceptance)" if pending else ""),
        agent_name=agent_name, instructions=instructions, join_url=join_url or "",
        conversation_id=answer.get("conversationId") or "", invite_url=answer.get("inviteUrl") or "",
        owner_id=owner_id, claimed_at=timezone.now(), last_error="",
    )
    if not claimed:
        # Only a recovery of a claim older than CLAIM_TIMEOUT_MS moves a `claiming` instance;
        # the instance is bound now, so say so rather than hand out something the pool disowned.
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
