"""Tool provisioning for a running instance (claim time, or the instance asking for itself)."""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from convos.redaction import redact
from services_app import runtime_client, runtime_kinds
from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.plugins import get_plugin, registry as plugin_registry
from services_app.plugins.base import POOL, USER
from services_app.providers.base import ProviderError
from services_app.services.errors import ServicesError, provider_failed, provider_ok
from services_app.services.infra import gateway_token, live_infra
from services_app.services.teardown import destroy_resource, undo_resources
from services_app.signals import self_provision_requested

logger = logging.getLogger(__name__)
from services_app.db import DB
ENV_NAMES = "env_names"  # config key: the names of the variables the instance was given


def registry() -> list[dict[str, Any]]:
    """Every tool with its id, name, provisioning modes, and whether it is enabled (and why not)."""
    return plugin_registry()


def _plugin(tool_id: str):
    try:
        return get_plugin(tool_id)
    except ProviderError as exc:
        raise ServicesError(exc.message, code="unknown_tool", status_code=404) from exc


def user_config_check(*, tool_id: str, user_config: dict[str, Any]) -> dict[str, Any]:
    """Check the shape of a user's credentials for a "user" tool without using them (a claim does
    this before it takes an instance). Errors name the missing or bad field, never its value."""
    plugin = _plugin(tool_id)
    if USER not in plugin.provisioning:
        raise ServicesError(f"Tool {tool_id} cannot use the user's own credentials", code="bad_mode", status_code=400)
    try:
        names = sorted(plugin.user_env_vars(user_config))
    except ProviderError as exc:
        raise ServicesError(exc.message, code="invalid_user_config", status_code=400) from exc
    return {"ok": True, "toolId": tool_id, "variables": names}


LIVE = (ResourceStatus.ACTIVE, ResourceStatus.USER_PROVIDED)


def _refuse(instance_id: str, tool_id: str, message: str, *, code: str = "not_allowed", status_code: int = 403) -> ServicesError:
    self_provision_requested.send(sender=ServicesError, instance_id=instance_id, tool_id=tool_id, outcome="refused", detail=message)
    return ServicesError(message, code=code, status_code=status_code)


def _check_self_provision(infra: InstanceInfra, tool_id: str, user_config: dict[str, Any] | None) -> None:
    """An instance asking for a tool with its own token (its token sits in the agent's environment,
    so anyone who talks the agent into printing it holds it): only while claimed, only the tools
    its claim granted, never with credentials of its own, and at most SELF_PROVISION_MAX_PER_HOUR."""
    instance_id = infra.instance_id
    if user_config is not None:
        raise _refuse(instance_id, tool_id, "An instance may not pass credentials for itself")
    if infra.bound_at is None:
        raise _refuse(instance_id, tool_id, f"Instance {instance_id} is not claimed: it may not provision tools")
    if tool_id not in (infra.self_provision_tools or []):
        raise _refuse(instance_id, tool_id, f"Tool {tool_id} is not allowed for this instance's claim")
    limit = settings.SELF_PROVISION_MAX_PER_HOUR
    key = f"self-provision:{instance_id}"
    try:
        cache.add(key, 0, timeout=3600)
        calls = cache.incr(key)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: the grants and one-of-each still bound it
        logger.warning("self-provision rate limit of %s not checked: the cache is unavailable", instance_id)
        return
    if calls > limit:
        raise _refuse(instance_id, tool_id, f"At most {limit} self-provisioning calls an hour", code="rate_limited", status_code=429)


def tool_provision(*, instance_id: str, tool_id: str, user_config: dict[str, Any] | None = None,
                   by_instance: bool = False) -> dict[str, Any]:
    """Provision `tool_id` for the instance and inject its variables into it.

    With `user_config`, the user's own credentials are checked and injected (mode "user"): services
    records that the tool is user-provided but never stores the credentials. Without it the pool's
    account provisions the resource (mode "pool"). Returns `{resourceId, config}` (no secrets).

    An instance holds at most one live resource per tool: asking again returns the existing one.
    `by_instance`: the instance itself asks (self-provisioning), within the limits of its claim."""
    infra = live_infra(instance_id)
    plugin = _plugin(tool_id)
    if by_instance:
        _check_self_provision(infra, tool_id, user_config)
    elif infra.bound_at is None:
        # A claim's tools (and a user's credentials) reach an instance only once it accepted the
        # binding: one that refused (already bound to someone) never sees them.
        raise ServicesError(f"Instance {instance_id} is not bound to a conversation: configure it first",
                            code="not_bound", status_code=409)
    existing = InstanceService.objects.using(DB).filter(instance=infra, tool_id=tool_id, status__in=LIVE).first()
    if existing is not None:
        if by_instance:
            self_provision_requested.send(sender=ServicesError, instance_id=instance_id, tool_id=tool_id, outcome="existing",
                                          detail=f"already holds {tool_id} resource {existing.resource_id}")
        return _answer(existing, tool_id)
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

    # The variables' names (never their values) are kept so the tool can be taken back later.
    config = {**config, ENV_NAMES: sorted(env_vars)}
    try:
        with transaction.atomic(using=DB):
            row = InstanceService.objects.using(DB).create(instance=infra, tool_id=tool_id, resource_id=resource_id, config=config, status=status)
        # Delivered to the running instance, not as new infra variables: those would restart it
        # (a Railway redeploy takes minutes), which a claim cannot wait for. A reset wipes them.
        deliver_env(infra, values=env_vars, timeout=settings.PROVISION_TIMEOUT_S)
        if not InstanceInfra.objects.using(DB).filter(pk=infra.pk, bound_at=infra.bound_at).exists():
            # Reset while the tool was on its way (a recovery overtook a late claim): what was
            # just given belongs to a claim that no longer exists.
            raise ServicesError(f"Instance {instance_id} was reset while {tool_id} was being given", code="reset_meanwhile")
    except Exception as exc:
        # The instance could not be given the tool: take it back so nothing is held for nothing.
        InstanceService.objects.using(DB).filter(instance=infra, tool_id=tool_id, resource_id=resource_id).delete()
        undo_resources(created, instance_id=instance_id)
        message = redact(getattr(exc, "message", "") or exc.__class__.__name__)
        raise ServicesError(f"Could not give {tool_id} to instance {instance_id}: {message}", code="provision_failed") from exc
    if by_instance:
        self_provision_requested.send(sender=ServicesError, instance_id=instance_id, tool_id=tool_id, outcome="provisioned",
                                      detail=f"{tool_id} resource {row.resource_id}")
    return _answer(row, tool_id)


def deliver_env(infra: InstanceInfra, *, values: dict[str, str] | None = None, remove: list[str] | None = None,
                timeout: float) -> None:
    """Give the running instance claim-time variables (or take them back) the way its kind allows:
    this project's runtime on POST /pool/credentials; the production image (no such route) by
    POST /pool/restart {env}, which restarts its agent with them (a name taken back is set empty)."""
    kind = runtime_kinds.instance_kind(infra)
    if kind.credentials_route:
        runtime_client.set_credentials(infra.url, token=gateway_token(infra), values=values, remove=remove, timeout=timeout)
    elif kind.restart_route:
        env = {**{name: "" for name in remove or []}, **(values or {})}
        # A restart answers once the agent is up again: it gets at least a provisioning's time.
        runtime_client.restart(infra.url, token=gateway_token(infra), env=env, timeout=max(timeout, settings.PROVISION_TIMEOUT_S))
    else:
        raise ServicesError(f"Instance {infra.instance_id} runs {kind.name}, which cannot be given variables while it runs",
                            code="unsupported_by_runtime", status_code=501)


def _answer(row: InstanceService, tool_id: str) -> dict[str, Any]:
    return {"resourceId": row.resource_id, "config": _public(row.config), "toolId": tool_id, "status": row.status}


def _public(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != ENV_NAMES}


def tool_destroy(*, instance_id: str, tool_id: str, resource_id: str) -> dict[str, bool]:
    """Destroy one provisioned resource of the instance (e.g. a tool rolled back after a failed claim)."""
    row = InstanceService.objects.using(DB).filter(instance__instance_id=instance_id, tool_id=tool_id, resource_id=resource_id).first()
    if row is None:
        raise ServicesError(f"No {tool_id} resource {resource_id} for instance {instance_id}", code="not_found", status_code=404)
    if not destroy_resource(row):
        raise ServicesError(f"Could not destroy {tool_id} resource: {row.last_error}", code="destroy_failed")
    names = (row.config or {}).get(ENV_NAMES) or []
    if names and row.instance.torn_down_at is None:
        try:  # best effort: a reset after a failed claim wipes them anyway
            infra = row.instance
            deliver_env(infra, remove=names, timeout=settings.HEALTH_CHECK_TIMEOUT_S * 2)
        except (runtime_client.RuntimeCallError, ServicesError) as exc:
            logger.warning("could not take %s credentials back from %s: %s", tool_id, instance_id, exc.message)
    return {"ok": True}
