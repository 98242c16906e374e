"""Destroying tool resources: in the seed's order, each step isolated from the others."""
from __future__ import annotations

import logging

from django.utils import timezone

from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.plugins import TEARDOWN_ORDER, all_plugins, get_plugin
from services_app.plugins.base import ProvisionedResource
from services_app.providers.base import ProviderError
from services_app.services.errors import provider_failed, provider_ok

logger = logging.getLogger(__name__)
from services_app.db import DB
_NOTHING_TO_CALL = (ResourceStatus.USER_PROVIDED, ResourceStatus.DESTROYED)


def _order(tool_id: str) -> int:
    return TEARDOWN_ORDER.index(tool_id) if tool_id in TEARDOWN_ORDER else len(TEARDOWN_ORDER)


def destroy_resource(resource: InstanceService) -> bool:
    """Destroy one recorded resource; returns True when it is gone. Failures are recorded on it."""
    if resource.status not in _NOTHING_TO_CALL:
        try:
            get_plugin(resource.tool_id).destroy(resource_id=resource.resource_id)
            provider_ok(resource.tool_id)
        except ProviderError as exc:
            resource.status = ResourceStatus.DESTROY_FAILED
            resource.last_error = provider_failed(resource.tool_id, exc.message)
            resource.save(using=DB, update_fields=["status", "last_error"])
            logger.warning("destroying %s %s failed: %s", resource.tool_id, resource.resource_id, resource.last_error)
            return False
    resource.status, resource.destroyed_at, resource.last_error = ResourceStatus.DESTROYED, timezone.now(), ""
    resource.save(using=DB, update_fields=["status", "destroyed_at", "last_error"])
    return True


def destroy_resources(infra: InstanceInfra) -> list[str]:
    """Destroy every resource of the instance still held; returns the tool ids that failed."""
    held = [r for r in InstanceService.objects.using(DB).filter(instance=infra) if r.status != ResourceStatus.DESTROYED]
    return [r.tool_id for r in sorted(held, key=lambda r: _order(r.tool_id)) if not destroy_resource(r)]


def destroy_claim_resources(infra: InstanceInfra) -> list[str]:
    """Destroy the resources a claim gave the instance (everything but the always-on tools it was
    created with); returns the tool ids that failed (kept as destroy_failed for the tick's retry)."""
    always = {plugin.tool_id for plugin in all_plugins() if plugin.always}
    held = InstanceService.objects.using(DB).filter(instance=infra, status__in=[ResourceStatus.ACTIVE, ResourceStatus.USER_PROVIDED])
    return [r.tool_id for r in sorted(held, key=lambda r: _order(r.tool_id)) if r.tool_id not in always and not destroy_resource(r)]


def undo_resources(created: list[tuple[str, ProvisionedResource]], *, instance_id: str) -> None:
    """Destroy resources created during a step that failed (nothing was recorded for them yet).

    A resource that cannot be destroyed now is recorded under a torn-down infra row of the
    instance, so `teardown_retry` finishes it later: nothing is left behind untracked."""
    leftovers: list[tuple[str, ProvisionedResource, str]] = []
    for tool_id, resource in reversed(created):
        try:
            get_plugin(tool_id).destroy(resource_id=resource.resource_id)
        except ProviderError as exc:
            leftovers.append((tool_id, resource, provider_failed(tool_id, exc.message)))
    if not leftovers:
        return
    logger.error("could not undo %d resource(s) of %s; recorded for retry", len(leftovers), instance_id)
    infra, _ = InstanceInfra.objects.using(DB).get_or_create(
        instance_id=instance_id,
        defaults={"provider": "none", "secret_nonce": "-", "instance_services_token_hash": "-", "torn_down_at": timezone.now(),
                  "last_error": "creation failed; resources left to destroy"},
    )
    for tool_id, resource, error in leftovers:
        InstanceService.objects.using(DB).create(instance=infra, tool_id=tool_id, resource_id=resource.resource_id, config=resource.config,
                                                 status=ResourceStatus.DESTROY_FAILED, last_error=error)
