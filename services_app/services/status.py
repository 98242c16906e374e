"""Deploy status and health of a batch of instances (status_batch), asking the provider on demand.

Railway allows 10,000 API calls an hour per account, and reading the deploy status of a fleet by
listing the workspace costs ceil(N / 50) calls, which every 30 s tick made 24% of that budget at
1,000 instances. Most instances, most of the time, are deployed and answering, and their health
check says so for free. So a batch:

1. health-checks the instances whose last known deploy status is running (and that did not change
   in the last RAILWAY_RECENT_CHANGE_MS); those that answer keep that status, unasked;
2. asks the provider (aliased lookups, one call per 50 on Railway) about the others: no known
   status, known but not running (starting, failed, sleeping: never pinged, a ping would wake a
   sleeping one), failing their health check now, or recently created or redeployed;
3. health-checks those the provider now calls running;
4. records what the provider said, where it changed (deploy_status, and when: deploy_checked_at), in bulk.

Every RAILWAY_FULL_SYNC_MS, and after a batch that raised, the provider is asked about every
instance instead (on Railway the paged workspace listing, the only answer complete enough to call
an absent project removed). When that last happened, and whether it is needed, is kept in the
Django cache (Redis when REDIS_URL is set), so the processes of a deployment share one schedule.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from services_app import health_checks
from services_app.db import DB
from services_app.deploy_states import NOT_FOUND, RUNNING, coarse_state
from services_app.models import InstanceInfra
from services_app.providers import get_provider
from services_app.providers.base import DeployState, InfraProvider, ProviderError
from services_app.services.errors import ServicesError, provider_failed, provider_ok
from services_app.services.infra import infra_ref

logger = logging.getLogger(__name__)

CACHE_TIMEOUT_S = 7 * 24 * 3600
WRITE_BATCH = 500  # rows per UPDATE statement when recording deploy statuses


def _now() -> datetime:
    return timezone.now()  # one seam: the budget benchmark runs an hour of ticks in simulated time


# --- full-sweep bookkeeping (Django cache) -------------------------------------------------------------
def _sweep_keys(provider: InfraProvider) -> tuple[str, str]:
    base = f"convos:{provider.name}:status:{getattr(provider, 'status_scope', '')}"
    return f"{base}:last_full_ms", f"{base}:full_needed"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def full_sweep_due(provider: InfraProvider, now: datetime) -> bool:
    last_key, needed_key = _sweep_keys(provider)
    try:
        values = cache.get_many([last_key, needed_key])
    except Exception as exc:  # the cache is down: ask on demand rather than burn the budget every tick
        logger.warning("status sweep bookkeeping unavailable (%s): asking %s on demand", exc.__class__.__name__, provider.name)
        return False
    last = values.get(last_key)
    return bool(values.get(needed_key)) or last is None or _ms(now) - int(last) >= settings.RAILWAY_FULL_SYNC_MS


def _record_full_sweep(provider: InfraProvider, now: datetime) -> None:
    last_key, needed_key = _sweep_keys(provider)
    try:
        cache.set(last_key, _ms(now), CACHE_TIMEOUT_S)
        cache.delete(needed_key)
    except Exception as exc:
        logger.warning("could not record %s's full status sweep: %s", provider.name, exc.__class__.__name__)


def mark_full_sweep_needed(provider: InfraProvider) -> None:
    try:
        cache.set(_sweep_keys(provider)[1], 1, CACHE_TIMEOUT_S)
    except Exception as exc:
        logger.warning("could not mark a full status sweep of %s as needed: %s", provider.name, exc.__class__.__name__)


# --- the batch -----------------------------------------------------------------------------------------
def _vouched_by_health(infra: InstanceInfra, recent_since: datetime) -> bool:
    """Whether a health check alone may vouch for this instance's deploy status."""
    return bool(infra.url) and infra.deploy_status == RUNNING and infra.updated_at < recent_since


def _check(urls: list[str], deadline_s: float) -> list[bool]:
    # A deadline for the whole batch: a fleet of hanging instances would otherwise hold the tick
    # for (instances / concurrency) x timeout. Unchecked instances count as not healthy this time
    # (the tick's outage guard stops that from destroying anything en masse).
    return health_checks.check_batch(urls, timeout=settings.HEALTH_CHECK_TIMEOUT_S, deadline_s=deadline_s,
                                     concurrency=settings.HEALTH_CHECK_CONCURRENCY)


_VOUCH_FIELDS = ("instance_id", "provider", "url", "deploy_status", "updated_at")


def _full_records(infras: list[InstanceInfra]) -> list[InstanceInfra]:
    """The same rows with every field (a provider's reference needs its ids and state), one query."""
    if not infras:
        return []
    return list(InstanceInfra.objects.using(DB).filter(instance_id__any=[i.instance_id for i in infras]))


def status_batch(*, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    # What vouching needs, for the whole fleet; the full records only of those the provider is asked about.
    infras = list(InstanceInfra.objects.using(DB).filter(instance_id__any=instance_ids, torn_down_at=None).only(*_VOUCH_FIELDS))
    now = _now()
    recent_since = now - timedelta(milliseconds=settings.RAILWAY_RECENT_CHANGE_MS)
    started = time.monotonic()
    groups: list[tuple[InfraProvider, list[InstanceInfra], bool]] = []
    by_name: dict[str, list[InstanceInfra]] = {}
    for infra in infras:
        by_name.setdefault(infra.provider, []).append(infra)
    for name, group in by_name.items():
        provider = get_provider(name)
        groups.append((provider, group, full_sweep_due(provider, now)))

    try:
        # 1. Health first, for instances last known running: those that answer need no provider call.
        first = [i for provider, group, full in groups if not full for i in group if _vouched_by_health(i, recent_since)]
        healthy = dict(zip((i.instance_id for i in first), _check([i.url for i in first], settings.HEALTH_CHECK_BATCH_DEADLINE_S)))
        deploy: dict[str, DeployState] = {i.instance_id: DeployState(i.deploy_status, i.url) for i in first if healthy[i.instance_id]}

        # 2. The provider, about every other instance.
        asked: list[InstanceInfra] = []
        for provider, group, full in groups:
            to_ask = _full_records([i for i in group if i.instance_id not in deploy])
            if to_ask:
                try:
                    deploy.update(provider.deploy_states([infra_ref(i) for i in to_ask], full=full))
                    provider_ok(provider.name)
                except ProviderError as exc:
                    raise ServicesError(f"Status of {provider.name} instances failed: {provider_failed(provider.name, exc.message)}",
                                        code="status_failed") from exc
                asked.extend(to_ask)
            if full:
                _record_full_sweep(provider, now)

        # 3. Health of those the provider calls running and step 1 did not check. Only a running
        # deployment can be healthy; sleeping or failed ones are not pinged.
        second = [i for i in asked if i.instance_id not in healthy and deploy[i.instance_id].deploy_status == RUNNING]
        if second:
            remaining = max(1.0, settings.HEALTH_CHECK_BATCH_DEADLINE_S - (time.monotonic() - started))
            healthy.update(zip((i.instance_id for i in second), _check([deploy[i.instance_id].url or i.url for i in second], remaining)))

        # 4. What the provider said, in a bounded number of statements (bulk_update leaves updated_at).
        # Only rows whose status changed: a fleet asked about every tick (a full sweep, a fill's
        # recent instances) would otherwise rewrite thousands of unchanged rows each time.
        changed = [i for i in asked if i.deploy_status != (deploy[i.instance_id].deploy_status or "")]
        for infra in changed:
            infra.deploy_status = deploy[infra.instance_id].deploy_status or ""
            infra.deploy_checked_at = now
        if changed:
            InstanceInfra.objects.using(DB).bulk_update(changed, ["deploy_status", "deploy_checked_at"], batch_size=WRITE_BATCH)
    except Exception:
        for provider, _, _ in groups:
            mark_full_sweep_needed(provider)  # whatever this batch missed, the next one reads it all
        raise

    statuses: dict[str, dict[str, Any]] = {}
    for instance_id in instance_ids:
        state = deploy.get(instance_id)
        if state is None:
            statuses[instance_id] = {"status": NOT_FOUND, "deployStatus": None, "healthy": False, "url": ""}
            continue
        ok = healthy.get(instance_id, False) and state.deploy_status == RUNNING
        statuses[instance_id] = {
            "status": coarse_state(state.deploy_status, ok),
            "deployStatus": state.deploy_status,
            "healthy": ok,
            "url": state.url,
        }
    return statuses
