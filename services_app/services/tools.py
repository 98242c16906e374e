"""Tool provisioning for a running instance (claim time, or the instance asking for itself)."""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from services_app.models import InstanceService, ResourceStatus
from services_app.plugins import get_plugin, registry as plugin_registry
from services_app.plugins.base import POOL, USER
from services_app.providers import get_provider
from services_app.providers.base import ProviderError
from services_app.services.errors import ServicesError, provider_failed, provider_ok
from services_app.services.infra import infra_ref, live_infra, save_ref
from services_app.services.teardown import destroy_resource, undo_resources

logger = logging.getLogger(__name__)
DB = "services"


def registry() -> list[dict[str, Any]]:
    """Every tool with its id, name, provisioning modes, and whether it is enabled (and why not)."""
    return plugin_registry()


def _plugin(tool_id: str):
    try:
        return get_plugin(tool_id)
    except ProviderError as exc:
        raise ServicesError(exc.message, code="unknown_tool", status_code=404) from exc


def tool_provision(*, instance_id: str, tool_id: str, user_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provision `tool_id` for the instance and inject its variables into it.

    With `user_config`, the user's own credentials are checked and injected (mode "user"): services
    records that the tool is user-provided but never stores the credentials. Without it the pool's
    account provisions the resource (mode "pool"). Returns `{resourceId, config}` (no secrets)."""
    infra = live_infra(instance_id)
    plugin = _plugin(tool_id)
    mode = USER if user_config is not None else POOL
    if mode not in plugin.provisioning:
        raise ServicesError(f"Tool {tool_id} cannot be provisioned in {mode!r} mode", code="bad_mode", status_code=400)
    if mode == POOL:
        enabled, why = plugin.enabled()
        if not enabled:
            raise ServicesError(f"Tool {tool_id} is not enabled: {why}", code="tool_disabled", status_code=409)
    created = []
    try:
        if mode == USER:
            env_vars = plugin.user_env_vars(user_config or {})
            resource_id, config, status = "user", {}, ResourceStatus.USER_PROVIDED
        else:
            resource = plugin.create(instance_id=instance_id)
            created.append((tool_id, resource))
            provider_ok(tool_id)
            env_vars, resource_id, config, status = resource.env_vars, resource.resource_id, resource.config, ResourceStatus.ACTIVE
    except ProviderError as exc:
        if exc.permanent and mode == USER:
            raise ServicesError(exc.message, code="invalid_user_config", status_code=400) from exc
        raise ServicesError(f"Could not provision {tool_id}: {provider_failed(tool_id, exc.message)}", code="provision_failed") from exc

    provider = get_provider(infra.provider)
    try:
        with transaction.atomic(using=DB):
            row = InstanceService.objects.using(DB).create(instance=infra, tool_id=tool_id, resource_id=resource_id, config=config, status=status)
        save_ref(infra, provider.set_variables(infra_ref(infra), env_vars))
    except Exception as exc:
        # The instance could not be given the tool: take it back so nothing is held for nothing.
        InstanceService.objects.using(DB).filter(instance=infra, tool_id=tool_id, resource_id=resource_id).delete()
        undo_resources(created, instance_id=instance_id)
        message = provider_failed(provider.name, exc.message) if isinstance(exc, ProviderError) else exc.__class__.__name__
        raise ServicesError(f"Could not give {tool_id} to instance {instance_id}: {message}", code="provision_failed") from exc
    return {"resourceId": row.resource_id, "config": row.config, "toolId": tool_id, "status": row.status}


def tool_destroy(*, instance_id: str, tool_id: str, resource_id: str) -> dict[str, bool]:
    """Destroy one provisioned resource of the instance (e.g. a tool rolled back after a failed claim)."""
    row = InstanceService.objects.using(DB).filter(instance__instance_id=instance_id, tool_id=tool_id, resource_id=resource_id).first()
    if row is None:
        raise ServicesError(f"No {tool_id} resource {resource_id} for instance {instance_id}", code="not_found", status_code=404)
    if not destroy_resource(row):
        raise ServicesError(f"Could not destroy {tool_id} resource: {row.last_error}", code="destroy_failed")
    return {"ok": True}
