"""What services tells the pool about an instance's deployment: a few coarse states, mapped here
from a provider's own deploy statuses (Railway's DeploymentStatus vocabulary, which every provider
speaks). The pool reasons only about these words; provider status names never leave services.
"""
from __future__ import annotations

HEALTHY = "healthy"  # deployed and answering /pool/health
DEPLOYING = "deploying"  # being built or started
DEPLOY_FAILED = "deploy_failed"  # the deployment failed, crashed or was removed
SLEEPING = "sleeping"  # the provider put it to sleep; not dead
UNREACHABLE = "unreachable"  # deployed (or unknown) but not answering
NOT_FOUND = "not_found"  # services has no live record of the instance

STATES = (HEALTHY, DEPLOYING, DEPLOY_FAILED, SLEEPING, UNREACHABLE, NOT_FOUND)

# Railway DeploymentStatus values, grouped.
_SLEEPING = frozenset({"SLEEPING"})
_FAILED = frozenset({"FAILED", "CRASHED", "REMOVED", "REMOVING", "SKIPPED"})
_DEPLOYING = frozenset({"QUEUED", "WAITING", "BUILDING", "DEPLOYING", "INITIALIZING", "NEEDS_APPROVAL"})
RUNNING = "SUCCESS"  # the only deploy status whose instance is worth a health check


def coarse_state(deploy_status: str | None, healthy: bool) -> str:
    if deploy_status in _SLEEPING:
        return SLEEPING
    if deploy_status in _FAILED:
        return DEPLOY_FAILED
    if deploy_status in _DEPLOYING:
        return DEPLOYING
    if deploy_status == RUNNING and healthy:
        return HEALTHY
    return UNREACHABLE
