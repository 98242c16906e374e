"""Telling the pool about the instance's own binding, so it need not wait for its next tick.

The pool's routes for this (`POST /api/pool/pending-acceptance/complete` and `/fail`) take the
instance's own services token. Best effort: the tick's `reconcile_claims` reaches the same
result a little later, so a failure here is only logged.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import requests

logger = logging.getLogger(__name__)

TIMEOUT_S = 10.0


def pending_join_resolved(credentials: Mapping[str, str], *, accepted: bool, reason: str = "") -> bool:
    pool_url, token = credentials.get("POOL_URL"), credentials.get("INSTANCE_SERVICES_TOKEN")
    if not pool_url or not token:
        return False
    route = "complete" if accepted else "fail"
    try:
        response = requests.post(f"{pool_url.rstrip('/')}/api/pool/pending-acceptance/{route}", json={} if accepted else {"reason": reason},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as exc:
        logger.warning("could not tell the pool the pending join %s: %s", "was accepted" if accepted else "failed", exc.__class__.__name__)
        return False
    if response.status_code >= 400:
        logger.warning("the pool answered HTTP %d to the pending join's %s", response.status_code, route)
        return False
    logger.info("told the pool the pending join %s", "was accepted" if accepted else "failed")
    return True
