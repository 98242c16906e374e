"""The orphan sweep: resources a provider holds under a name the pool gives that no row records.

A projectCreate whose answer was lost, a worker killed between a provider's create and the row that
records it, a tool resource minted by a claim that died: each leaves something at a provider that
no row knows of, so no teardown will ever find it. `orphans_sweep()` asks every source that can
list what the pool made (the infra provider's `list_owned`, each enabled tool plugin's
`list_owned`), keeps what no row records and what is older than ORPHAN_GRACE_MS, reports it, and
deletes it only when ORPHAN_SWEEP_DELETE is true (and the caller allows it: never while the pool is
paused).

Safety, in order of importance:
- Only names the pool gives are ever listed (each `list_owned` matches prefix + instance id), so
  nothing the pool did not make can be reported or deleted.
- The rows are read AFTER the listing: an instance recorded while the listing ran is seen as
  recorded. The grace period covers creations still in flight (the row is written after the
  provider's create returns); a resource whose age the provider does not give is never an orphan.
- One source failing (a listing error) does not stop the others; its error is returned and
  recorded as the provider's last error, and its gauge keeps the previous sweep's value.

Not covered: Bankr (its API contract is assumed, with no documented list endpoint) and the wallet
(a local key: nothing is held at a provider). The reverse direction (rows whose resource is gone)
needs no sweep: status_batch reports a missing project REMOVED, the pool marks the instance dead and
destroys it, and every destroy counts "already gone" as done.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from convos.metrics import ORPHANS
from services_app.db import DB
from services_app.models import InstanceInfra, InstanceService, ProviderStatus, ResourceStatus
from services_app.plugins import all_plugins
from services_app.providers import get_provider
from services_app.providers.base import OwnedResource, ProviderError
from services_app.services.errors import provider_failed, provider_ok

logger = logging.getLogger(__name__)

# The last sweep's answer, for the services admin (shared by every process when the cache is Redis).
LAST_SWEEP_CACHE_KEY = "services:orphan-sweep:last"


@dataclass
class _Source:
    name: str  # the provider's name (gauge label, provider_status row): "railway", "openrouter", "email", ...
    list_owned: Callable[[], list[OwnedResource]]
    destroy: Callable[[OwnedResource], None]
    recorded: Callable[[list[OwnedResource]], set[str]]  # resource ids some row records


def _infra_recorded(listed: list[OwnedResource]) -> set[str]:
    ids = {r.instance_id for r in listed}
    rows = InstanceInfra.objects.using(DB).filter(instance_id__in=ids).values_list("instance_id", flat=True)
    by_project = set(InstanceInfra.objects.using(DB).filter(railway_project_id__in={r.resource_id for r in listed})
                     .values_list("railway_project_id", flat=True))
    known = set(rows)
    return {r.resource_id for r in listed if r.instance_id in known or r.resource_id in by_project}


def _tool_recorded(tool_id: str) -> Callable[[list[OwnedResource]], set[str]]:
    def recorded(listed: list[OwnedResource]) -> set[str]:
        # A destroyed row no longer holds its resource: one still listed is an orphan again.
        return set(InstanceService.objects.using(DB).filter(tool_id=tool_id, resource_id__in={r.resource_id for r in listed})
                   .exclude(status=ResourceStatus.DESTROYED).values_list("resource_id", flat=True))
    return recorded


def _sources() -> tuple[list[_Source], dict[str, str]]:
    """Every source that can list what the pool made; and the errors of those that cannot be built."""
    sources: list[_Source] = []
    errors: dict[str, str] = {}
    try:
        provider = get_provider()
        if hasattr(provider, "list_owned"):
            sources.append(_Source(provider.name, provider.list_owned, provider.destroy_owned, _infra_recorded))
    except ProviderError as exc:
        errors[settings.INFRA_PROVIDER] = provider_failed(settings.INFRA_PROVIDER, exc.message)
    for plugin in all_plugins():
        if not hasattr(plugin, "list_owned") or not plugin.enabled()[0]:
            continue  # not configured, or its provider cannot list by the name the pool gave (module docstring)
        sources.append(_Source(plugin.tool_id, plugin.list_owned,
                               lambda r, p=plugin: p.destroy(resource_id=r.resource_id), _tool_recorded(plugin.tool_id)))
    return sources, errors


def _describe(resource: OwnedResource) -> dict[str, Any]:
    return {"resourceId": resource.resource_id, "name": resource.name, "instanceId": resource.instance_id,
            "createdAt": resource.created_at.isoformat() if resource.created_at else None}


def _older_than(resource: OwnedResource, grace: timedelta, now: datetime) -> bool:
    if resource.created_at is None:
        return False  # age unknown: it may be a creation in flight
    created = resource.created_at if timezone.is_aware(resource.created_at) else resource.created_at.replace(tzinfo=dt_timezone.utc)
    return now - created >= grace


def _sweep(source: _Source, *, grace: timedelta, delete: bool) -> dict[str, Any]:
    listed = source.list_owned()
    provider_ok(source.name)
    ProviderStatus.objects.using(DB).get_or_create(provider=source.name)  # the admin shows the sweep on this row
    now = timezone.now()
    recorded = source.recorded(listed) if listed else set()  # read after the listing (module docstring)
    orphans = [r for r in listed if r.resource_id not in recorded and _older_than(r, grace, now)]
    entry: dict[str, Any] = {"listed": len(listed), "orphans": [_describe(r) for r in orphans], "deleted": 0, "deleteErrors": {}}
    for resource in orphans:
        logger.warning("orphan at %s: %s (%s) of instance %s, created %s, recorded by no row%s", source.name, resource.resource_id,
                       resource.name, resource.instance_id, resource.created_at, "; deleting it" if delete else "")
        if not delete:
            continue
        try:
            source.destroy(resource)
            entry["deleted"] += 1
        except ProviderError as exc:
            entry["deleteErrors"][resource.resource_id] = provider_failed(source.name, exc.message)
    return entry


def orphans_sweep(*, delete_allowed: bool = True) -> dict[str, Any]:
    """List, report and (with ORPHAN_SWEEP_DELETE and `delete_allowed`) delete orphans.

    Returns `{"delete", "graceMs", "providers": {name: {"listed", "orphans": [...], "deleted",
    "deleteErrors": {resourceId: message}}}, "errors": {name: message}}`."""
    grace = timedelta(milliseconds=max(0, settings.ORPHAN_GRACE_MS))
    delete = bool(settings.ORPHAN_SWEEP_DELETE) and delete_allowed
    sources, errors = _sources()
    providers: dict[str, dict[str, Any]] = {}
    for source in sources:
        try:
            entry = _sweep(source, grace=grace, delete=delete)
        except Exception as exc:  # one provider's listing (or answer) never stops the others
            message = exc.message if isinstance(exc, ProviderError) else f"{exc.__class__.__name__}: {exc}"
            errors[source.name] = provider_failed(source.name, f"orphan sweep listing failed: {message}")
            logger.warning("orphan sweep: listing %s failed: %s", source.name, errors[source.name])
            continue
        ORPHANS.labels(source.name).set(len(entry["orphans"]) - entry["deleted"])
        providers[source.name] = entry
    result = {"at": timezone.now().isoformat(), "delete": delete, "graceMs": int(grace.total_seconds() * 1000),
              "providers": providers, "errors": errors}
    try:
        cache.set(LAST_SWEEP_CACHE_KEY, result, timeout=None)
    except Exception:  # the admin's copy is a convenience: never fail the sweep over it
        logger.exception("orphan sweep: caching the result failed")
    return result


def orphans_last_sweep() -> dict[str, Any] | None:
    """The last sweep's answer (this process's, or every process's when the cache is shared)."""
    return cache.get(LAST_SWEEP_CACHE_KEY)
