"""One pure function from what services observed to the pool status (reference section 2).

Kept free of I/O and of the database so every combination can be checked in a table-driven test.
"""
from __future__ import annotations

from datetime import timedelta

from pool_app.models import InstanceStatus as S

SLEEPING = frozenset({"SLEEPING"})
FAILED = frozenset({"FAILED", "CRASHED", "REMOVED", "REMOVING", "SKIPPED"})
DEPLOYING = frozenset({"QUEUED", "WAITING", "BUILDING", "DEPLOYING", "INITIALIZING", "NEEDS_APPROVAL"})


def derive_status(*, deploy_status: str | None, healthy: bool, unhealthy_for: timedelta, claimed: bool, stuck_timeout: timedelta) -> str:
    """Status an instance should have, in the reference's order of rules.

    `unhealthy_for` is how long the instance has gone without a healthy check (since creation for
    one that never was healthy). A claimed instance is never called dead or stuck: the worst it
    becomes is `crashed`, which the tick never destroys. Sleeping is never treated as dead.
    """
    if deploy_status in SLEEPING:
        return S.SLEEPING
    if deploy_status in FAILED:
        return S.CRASHED if claimed else S.DEAD
    if claimed:
        return S.CLAIMED
    if deploy_status == "SUCCESS" and healthy:
        return S.IDLE
    # Deploying, or deployed but not answering, or unknown: give it POOL_STUCK_TIMEOUT_MS. A
    # deploy queued forever is as stuck as one that never answers, so the timeout covers both.
    return S.STUCK if unhealthy_for > stuck_timeout else S.STARTING
