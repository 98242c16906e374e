"""Putting an instance back where it is safe: the one rule for every path that may leave an
instance holding something of a claim (a failed or late claim, a crash, a bound idle instance).

The rule: ownership first, side effects second. A recovery moves the row to `resetting` with a
conditional update and acts only if that update won; the instance is then factory-reset and
becomes `idle` only when it afterwards reports itself clean (`/convos/status`). Otherwise it is
`crashed` and stays out of the pool (the tick tries again), and after POOL_MAX_RESET_FAILURES
unclean resets it is `dead`, so it is destroyed and replaced.
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from convos.log_format import logs_for_instance

from pool_app.models import Instance, InstanceStatus
from pool_app.transitions import transition
from services_app import facade as services

logger = logging.getLogger(__name__)
from pool_app.db import DB


def reset_is_clean(instance_id: str) -> bool:
    """Factory-reset the instance, then ask it again rather than trust the reset's own answer:
    what it says afterwards is what the next claimer gets."""
    try:
        if services.reset(instance_id).get("clean") is not True:
            return False
        return services.convos_status(instance_id).get("clean") is True
    except services.ServicesError as exc:
        logger.warning("reset of %s failed: %s", instance_id, exc.message)
        return False


@logs_for_instance
def reset_and_release(instance_id: str, *, actor: str, reason: str, instance_failed: bool = False) -> str:
    """Reset an instance this process owns (`resetting`), then release it: `idle` if clean, else
    `crashed` (or `dead` after too many unclean resets). Returns the status it ended in.

    `instance_failed`: the instance itself failed a claim's provisioning. That counts as a failure
    in a row even if the reset is clean: the oldest idle instance is the next claim's pick, so one
    that always fails its provisioning would otherwise fail every claim. POOL_MAX_RESET_FAILURES
    of them in a row make it `dead` (replaced); a successful claim starts the count again."""
    clean = reset_is_clean(instance_id)
    if clean and instance_failed:
        row = Instance.objects.using(DB).filter(pk=instance_id).only("reset_failures").first()
        failures = (row.reset_failures if row else 0) + 1
        if failures >= settings.POOL_MAX_RESET_FAILURES:
            moved = transition(instance_id, from_status=InstanceStatus.RESETTING, to_status=InstanceStatus.DEAD, actor=actor,
                               reason=f"{reason}; reset clean, but it failed {failures} claims in a row", needs_reset=True,
                               reset_failures=failures, last_error=reason, claim_started_at=None, join_url="")
            return InstanceStatus.DEAD if moved else _current(instance_id)
        moved = transition(instance_id, from_status=InstanceStatus.RESETTING, to_status=InstanceStatus.IDLE, actor=actor,
                           reason=f"{reason}; reset clean ({failures} failed claims in a row)", needs_reset=False,
                           reset_failures=failures, last_error=reason, claim_started_at=None, join_url="", audited_at=timezone.now())
        return InstanceStatus.IDLE if moved else _current(instance_id)
    if clean:
        moved = transition(instance_id, from_status=InstanceStatus.RESETTING, to_status=InstanceStatus.IDLE, actor=actor,
                           reason=f"{reason}; reset clean", needs_reset=False, reset_failures=0, last_error="",
                           claim_started_at=None, join_url="", audited_at=timezone.now())
        return InstanceStatus.IDLE if moved else _current(instance_id)
    row = Instance.objects.using(DB).filter(pk=instance_id).only("reset_failures").first()
    failures = (row.reset_failures if row else 0) + 1
    to_status = InstanceStatus.DEAD if failures >= settings.POOL_MAX_RESET_FAILURES else InstanceStatus.CRASHED
    moved = transition(instance_id, from_status=InstanceStatus.RESETTING, to_status=to_status, actor=actor,
                       reason=f"{reason}; reset not clean ({failures} in a row)", needs_reset=True, reset_failures=failures,
                       last_error=reason, claim_started_at=None, join_url="")
    return to_status if moved else _current(instance_id)


@logs_for_instance
def take_and_reset(instance_id: str, *, from_status: str, actor: str, reason: str, instance_failed: bool = False) -> str | None:
    """Own the instance (`from_status` -> `resetting`), then reset and release it. Returns the
    status it ended in, or None when another process owned it first (nothing was done)."""
    if not transition(instance_id, from_status=from_status, to_status=InstanceStatus.RESETTING, actor=actor, reason=reason,
                      needs_reset=True):
        return None
    return reset_and_release(instance_id, actor=actor, reason=reason, instance_failed=instance_failed)


@logs_for_instance
def retake_stale_reset(instance_id: str, *, owned_since, actor: str, reason: str) -> str | None:
    """A `resetting` row whose owner died: take it over (a conditional update on the time it was
    owned since, so two ticks never both take it), then reset and release it."""
    won = Instance.objects.using(DB).filter(pk=instance_id, status=InstanceStatus.RESETTING,
                                            status_changed_at=owned_since).update(status_changed_at=timezone.now())
    if not won:
        return None
    return reset_and_release(instance_id, actor=actor, reason=reason)


@logs_for_instance
def claim_recover(instance_id: str, *, reason: str, actor: str, already_bound: bool = False, instance_failed: bool = False) -> str | None:
    """Recover an instance whose claim failed or died (the claim's own error path and the tick's
    step for stale claims). Returns the status it ended in, or None if the claim was no longer
    `claiming` (completed, or recovered by someone else): then nothing is touched.

    A 409 from the instance means it is already bound to a conversation the pool did not give it:
    not ours to wipe, never offered again: `tainted` (unclaimed tainted instances are replaced).
    """
    if already_bound:
        moved = transition(instance_id, from_status=InstanceStatus.CLAIMING, to_status=InstanceStatus.TAINTED, actor=actor,
                           reason=f"{reason}; the instance is already bound to a conversation", needs_reset=True,
                           last_error=reason, join_url="", claim_started_at=None)
        return InstanceStatus.TAINTED if moved else None
    return take_and_reset(instance_id, from_status=InstanceStatus.CLAIMING, actor=actor, reason=reason, instance_failed=instance_failed)


@logs_for_instance
def late_claim_recover(instance_id: str, *, actor: str, reason: str, wait_s: float = 30.0) -> str | None:
    """A claim finished after the tick recovered it: whatever it did after that recovery's reset
    (a binding, credentials) may sit on an instance the pool lists as idle. Own the row again once
    the recovery is done, and reset it once more."""
    deadline = time.monotonic() + wait_s
    while True:
        row = Instance.objects.using(DB).filter(pk=instance_id).only("status").first()
        if row is None:
            return None
        if row.status == InstanceStatus.RESETTING and time.monotonic() < deadline:
            time.sleep(0.2)  # the recovery is resetting it; our leftovers may land after its reset
            continue
        if row.status in (InstanceStatus.IDLE, InstanceStatus.CRASHED):
            outcome = take_and_reset(instance_id, from_status=row.status, actor=actor, reason=reason)
            if outcome is not None or row.status == InstanceStatus.CRASHED:
                return outcome
            continue  # it moved between the read and the update: look again
        if row.status == InstanceStatus.RESETTING:
            # Still resetting after the wait: make sure it is reset again once it is released.
            Instance.objects.using(DB).filter(pk=instance_id).update(needs_reset=True)
        return None


def _current(instance_id: str) -> str:
    return Instance.objects.using(DB).filter(pk=instance_id).values_list("status", flat=True).first() or ""
