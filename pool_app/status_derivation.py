"""One pure function from what services observed to the pool status (reference section 2).

Kept free of I/O and of the database so every combination can be checked in a table-driven test.
It reads services' coarse deploy states (services_app/deploy_states.py, through the facade), never
a provider's own status names.
"""
from __future__ import annotations

from datetime import timedelta

from pool_app.models import InstanceStatus as S
from services_app.facade import deploy_states as state_words

# A deployment that is gone, or that services no longer knows, is dead for the pool.
_GONE = frozenset({state_words.DEPLOY_FAILED, state_words.NOT_FOUND})


def derive_status(*, state: str, unhealthy_for: timedelta, claimed: bool, stuck_timeout: timedelta) -> str:
    """Status an instance should have, in the reference's order of rules.

    `unhealthy_for` is how long the instance has gone without a healthy check (since creation for
    one that never was healthy). A claimed instance is never called dead or stuck: the worst it
    becomes is `crashed`, which the tick never destroys. Sleeping is never treated as dead.
    """
    if state == state_words.SLEEPING:
        return S.SLEEPING
    if state in _GONE:
        return S.CRASHED if claimed else S.DEAD
    if claimed:
        return S.CLAIMED
    if state == state_words.HEALTHY:
        return S.IDLE
    # Deploying, or deployed but not answering, or unknown: give it POOL_STUCK_TIMEOUT_MS. A
    # deploy queued forever is as stuck as one that never answers, so the timeout covers both.
    return S.STUCK if unhealthy_for > stuck_timeout else S.STARTING


def reconcile_claim(*, current: str, recorded_conversation: str, reported: dict) -> tuple[str, str]:
    """Status of a claimed instance from what it says about its conversation (`/convos/status`),
    and the conversation id to record. Only the claim statuses move here:

    - pending_acceptance -> claimed once the owner accepted (`pending` false, a conversation);
    - pending_acceptance -> tainted when the instance no longer waits and holds no conversation
      (the join failed, or the instance lost its binding): production's rule;
    - claimed -> tainted when the instance reports another conversation than the one recorded,
      or none at all (it was reset or lost its binding);
    - tainted -> claimed when it reports the recorded conversation again.
    """
    conversation = reported.get("conversationId") or ""
    if current == S.PENDING_ACCEPTANCE:
        if reported.get("pending") is False:
            return (S.CLAIMED, conversation) if conversation else (S.TAINTED, recorded_conversation)
        return current, recorded_conversation
    if current in (S.CLAIMED, S.TAINTED) and recorded_conversation:
        return (S.CLAIMED if conversation == recorded_conversation else S.TAINTED), recorded_conversation
    return current, recorded_conversation
