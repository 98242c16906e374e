"""Instance infra lifecycle: create (with the always-on tools), destroy, status batch, redeploy.

Writes go to the `services` alias. The order of side effects is chosen so that a failure at any
step can be undone: tool resources first (their variables must be in place before the instance
boots), then the infra, then the rows; a failure undoes everything created so far.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from services_app import instance_secrets, runtime_kinds
from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.plugins import all_plugins, get_plugin
from services_app.plugins.base import ProvisionedResource
from services_app.providers import get_provider
from services_app.providers.base import InfraRef, ProviderError
from services_app.services.errors import ServicesError, provider_failed, provider_ok
from services_app.services.teardown import destroy_resource, destroy_resources, undo_resources

logger = logging.getLogger(__name__)
from services_app.db import DB


# --- helpers ----------------------------------------------------------------------------------------
def infra_ref(infra: InstanceInfra) -> InfraRef:
    return InfraRef(
        instance_id=infra.instance_id,
        url=infra.url,
        railway_project_id=infra.railway_project_id,
        railway_service_id=infra.railway_service_id,
        railway_environment_id=infra.railway_environment_id,
        image_tag=infra.image_tag,
        provider_state=dict(infra.provider_state or {}),
    )


def save_ref(infra: InstanceInfra, ref: InfraRef) -> None:
    infra.url = ref.url
    infra.provider_state = ref.provider_state
    infra.save(using=DB, update_fields=["url", "provider_state", "updated_at"])


def live_infra(instance_id: str) -> InstanceInfra:
    infra = InstanceInfra.objects.using(DB).filter(instance_id=instance_id, torn_down_at=None).first()
    if infra is None:
        raise ServicesError(f"Unknown instance {instance_id}", code="not_found", status_code=404)
    return infra


def instance_for_token(*, token: str) -> str | None:
    """The live instance whose services token this is (tokens are stored only as hashes), or None."""
    if not token:
        return None
    return (InstanceInfra.objects.using(DB)
            .filter(instance_services_token_hash=instance_secrets.token_hash(token), torn_down_at=None)
            .values_list("instance_id", flat=True).first())


def gateway_token(infra: InstanceInfra) -> str:
    return instance_secrets.gateway_token(instance_id=infra.instance_id, nonce=infra.secret_nonce)


def _runtime_variables(*, instance_id: str, gateway_token: str, services_token: str,
                       kind: runtime_kinds.RuntimeKind) -> dict[str, str]:
    """Every instance's variables, plus those its runtime kind needs (runtime_kinds.creation_variables)."""
    variables = {
        "INSTANCE_ID": instance_id,
        "GATEWAY_TOKEN": gateway_token,
        "OPENCLAW_GATEWAY_TOKEN": gateway_token,
        "INSTANCE_SERVICES_TOKEN": services_token,
        "XMTP_ENV": settings.XMTP_ENV,
        "POOL_URL": settings.POOL_URL,
        "SERVICES_URL": settings.SERVICES_PUBLIC_URL,
    }
    if settings.OPENCLAW_PRIMARY_MODEL:
        variables["OPENCLAW_PRIMARY_MODEL"] = settings.OPENCLAW_PRIMARY_MODEL
    variables.update(runtime_kinds.creation_variables(kind))
    return {k: v for k, v in variables.items() if v}


def _always_on_provides() -> set[str]:
    """Variables the always-on tools will give once created: the openrouter tool's per-instance
    key, which replaces the pool-wide RUNTIME_OPENROUTER_API_KEY."""
    try:
        plugin = get_plugin("openrouter")
    except ProviderError:
        return set()
    return {"OPENROUTER_API_KEY"} if plugin.always and plugin.enabled()[0] else set()


def _missing_variables(kind: runtime_kinds.RuntimeKind, missing: list[str]) -> ServicesError:
    hint = (" (OPENROUTER_API_KEY: enable the openrouter tool with OPENROUTER_MANAGEMENT_KEY, or set RUNTIME_OPENROUTER_API_KEY)"
            if "OPENROUTER_API_KEY" in missing else "")
    return ServicesError(f"Cannot create a {kind.name} instance: it needs {', '.join(missing)}, which this pool cannot provide{hint}",
                         code="missing_runtime_variable", status_code=500)


def _provision_always_on(instance_id: str) -> list[tuple[str, ProvisionedResource]]:
    """Create the always-on tools that are enabled (OpenRouter key, wallet); undo on failure."""
    created: list[tuple[str, ProvisionedResource]] = []
    for plugin in all_plugins():
        if not plugin.always or not plugin.enabled()[0]:
            continue
        try:
            created.append((plugin.tool_id, plugin.create(instance_id=instance_id)))
            provider_ok(plugin.tool_id)
        except ProviderError as exc:
            message = provider_failed(plugin.tool_id, exc.message)
            undo_resources(created, instance_id=instance_id)
            raise ServicesError(f"Could not provision {plugin.name}: {message}", code="create_failed") from exc
    return created


# --- infra lifecycle ----------------------------------------------------------------------------------
def instance_create(*, instance_id: str) -> dict[str, str]:
    """Create the instance: always-on tools, then the infra with every variable in place before it
    boots, then the rows. Any failure undoes what was created; the error names the failed step."""
    if InstanceInfra.objects.using(DB).filter(instance_id=instance_id).exists():
        raise ServicesError(f"Instance {instance_id} already exists", code="exists", status_code=409)
    try:
        kind = runtime_kinds.configured()
    except ValueError as exc:
        raise ServicesError(f"POOL_RUNTIME_KIND: {exc}", code="missing_runtime_variable", status_code=500) from exc
    provider = get_provider()
    nonce = instance_secrets.new_nonce()
    services_token = instance_secrets.new_services_token()
    variables = _runtime_variables(
        instance_id=instance_id,
        gateway_token=instance_secrets.gateway_token(instance_id=instance_id, nonce=nonce),
        services_token=services_token,
        kind=kind,
    )
    # A kind that would not boot without a variable fails here, before anything is created.
    missing = runtime_kinds.missing(kind, variables, still_coming=_always_on_provides())
    if missing:
        raise _missing_variables(kind, missing)
    tools = _provision_always_on(instance_id)
    for _, resource in tools:
        variables.update(resource.env_vars)  # a per-instance key replaces a pool-wide one
    missing = runtime_kinds.missing(kind, variables)
    if missing:  # a tool that was to give one did not
        undo_resources(tools, instance_id=instance_id)
        raise _missing_variables(kind, missing)
    try:
        ref = provider.create(instance_id=instance_id, variables=variables)
        provider_ok(provider.name)
    except ProviderError as exc:
        message = provider_failed(provider.name, exc.message)
        logger.warning("create of %s failed at %s: %s", instance_id, provider.name, message)
        undo_resources(tools, instance_id=instance_id)
        raise ServicesError(f"Could not create instance: {message}", code="create_failed") from exc
    try:
        with transaction.atomic(using=DB):
            infra = InstanceInfra.objects.using(DB).create(
                instance_id=instance_id,
                provider=provider.name,
                url=ref.url,
                railway_project_id=ref.railway_project_id,
                railway_service_id=ref.railway_service_id,
                railway_environment_id=ref.railway_environment_id,
                image_tag=ref.image_tag,
                provider_state=ref.provider_state,
                secret_nonce=nonce,
                instance_services_token_hash=instance_secrets.token_hash(services_token),
            )
            InstanceService.objects.using(DB).bulk_create(
                InstanceService(instance=infra, tool_id=tool_id, resource_id=r.resource_id, config=r.config) for tool_id, r in tools
            )
    except Exception:
        # Without its rows the instance would be an orphan nobody tears down: undo it now.
        logger.exception("recording %s failed; destroying what was created", instance_id)
        try:
            provider.destroy(ref)
        finally:
            undo_resources(tools, instance_id=instance_id)
        raise
    return {"instanceId": instance_id, "url": ref.url}


def instance_destroy(*, instance_id: str) -> dict[str, Any]:
    """Tear down in the seed's order: tool resources (OpenRouter, AgentMail, Telnyx, Bankr), then
    the infra. One failing step does not stop the others. Resources that could not be destroyed
    stay recorded (`destroy_failed`) with the infra row, and `teardown_retry` finishes them; the
    instance is forgotten only when nothing of it remains. Unknown instances are already gone."""
    infra = InstanceInfra.objects.using(DB).filter(instance_id=instance_id).first()
    if infra is None:
        return {"ok": True, "pendingResources": 0}
    failed = destroy_resources(infra)
    if infra.torn_down_at is None:
        provider = get_provider(infra.provider)
        try:
            provider.destroy(infra_ref(infra))
            provider_ok(provider.name)
        except ProviderError as exc:
            infra.last_error = provider_failed(provider.name, exc.message)
            infra.save(using=DB, update_fields=["last_error", "updated_at"])
            raise ServicesError(f"Could not destroy instance {instance_id}: {infra.last_error}", code="destroy_failed") from exc
    if failed:
        infra.torn_down_at = infra.torn_down_at or timezone.now()
        infra.last_error = f"{len(failed)} resource(s) not destroyed yet: {', '.join(failed)}"
        infra.save(using=DB, update_fields=["torn_down_at", "last_error", "updated_at"])
        return {"ok": True, "pendingResources": len(failed)}
    with transaction.atomic(using=DB):
        InstanceService.objects.using(DB).filter(instance=infra).delete()
        infra.delete(using=DB)
    return {"ok": True, "pendingResources": 0}


def instance_abandon_creation(*, instance_id: str) -> dict[str, Any]:
    """Give up on a creation that never finished (its caller died, or its answer was lost): destroy
    the instance if services recorded it, else ask the provider for anything it holds under the
    instance's name and remove that. Safe to repeat."""
    if InstanceInfra.objects.using(DB).filter(instance_id=instance_id).exists():
        return {**instance_destroy(instance_id=instance_id), "found": True}
    provider = get_provider()
    try:
        found = provider.destroy_unrecorded(instance_id)
        provider_ok(provider.name)
    except ProviderError as exc:
        raise ServicesError(f"Could not clean up instance {instance_id}: {provider_failed(provider.name, exc.message)}",
                            code="destroy_failed") from exc
    return {"ok": True, "pendingResources": 0, "found": found}


def teardown_retry() -> dict[str, int]:
    """Retry resources whose destroy failed (a tick step): those of torn-down instances, and those a
    reset of a live instance could not destroy."""
    pending = list(InstanceInfra.objects.using(DB).exclude(torn_down_at=None))
    finished = 0
    for infra in pending:
        try:
            if instance_destroy(instance_id=infra.instance_id)["pendingResources"] == 0:
                finished += 1
        except ServicesError as exc:
            logger.warning("teardown retry of %s failed: %s", infra.instance_id, exc.message)
    stray = list(InstanceService.objects.using(DB).filter(status=ResourceStatus.DESTROY_FAILED, instance__torn_down_at=None))
    finished += sum(1 for resource in stray if destroy_resource(resource))
    return {"pending": len(pending) + len(stray), "finished": finished}


def instance_redeploy(*, instance_id: str) -> dict[str, bool]:
    infra = live_infra(instance_id)
    provider = get_provider(infra.provider)
    try:
        save_ref(infra, provider.redeploy(infra_ref(infra)))
    except ProviderError as exc:
        raise ServicesError(f"Could not redeploy {instance_id}: {provider_failed(provider.name, exc.message)}", code="redeploy_failed") from exc
    return {"ok": True}


def status_batch(*, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Deploy status and health of every given instance, asking the provider only about those a
    health check does not vouch for (services_app/services/status.py has the how and why).

    Each value is `{"status", "deployStatus", "healthy", "url"}`; `status` is the seed's coarse
    value (deploying, deploy_failed, healthy, unreachable) plus `sleeping`, and `not_found` for an
    id services has no live record of. Health checks run concurrently (HEALTH_CHECK_CONCURRENCY)
    and never wait on one slow instance longer than HEALTH_CHECK_TIMEOUT_S.
    """
    from services_app.services import status  # it builds on this module's infra_ref

    return status.status_batch(instance_ids=instance_ids)


# --- local development fleet ----------------------------------------------------------------------------
def local_fleet_stop() -> list[str]:
    """Stop every local instance's process, keeping its data so `local_fleet_start` resumes it."""
    stopped: list[str] = []
    provider = get_provider("local")
    for infra in InstanceInfra.objects.using(DB).filter(provider="local", torn_down_at=None):
        save_ref(infra, provider.stop(infra_ref(infra)))  # type: ignore[attr-defined]
        stopped.append(infra.instance_id)
    return stopped


def local_fleet_start() -> list[str]:
    """Start every stopped or exited local instance again on its own data."""
    started: list[str] = []
    provider = get_provider("local")
    for infra in InstanceInfra.objects.using(DB).filter(provider="local", torn_down_at=None):
        ref = infra_ref(infra)
        try:
            new_ref = provider.start(ref)  # type: ignore[attr-defined]
        except ProviderError as exc:
            logger.warning("local instance %s could not start: %s", infra.instance_id, exc.message)
            continue
        if new_ref is not ref:
            save_ref(infra, new_ref)
            started.append(infra.instance_id)
    return started


# --- read ------------------------------------------------------------------------------------------
def _iso(value) -> str | None:
    return value.isoformat() if value else None


def instance_info(*, instance_id: str) -> dict[str, Any]:
    """What services holds for one instance (live or torn down with resources pending), for the
    operators' instance page: its infra and its tool resources. Never a secret: no tokens, nonces,
    keys, tool config or provider state."""
    infra = InstanceInfra.objects.using(DB).filter(instance_id=instance_id).first()
    if infra is None:
        raise ServicesError(f"Unknown instance {instance_id}", code="not_found", status_code=404)
    resources = InstanceService.objects.using(DB).filter(instance=infra).order_by("provisioned_at")
    return {
        "instanceId": infra.instance_id,
        "provider": infra.provider,
        "url": infra.url,
        "railwayProjectId": infra.railway_project_id,
        "railwayServiceId": infra.railway_service_id,
        "railwayEnvironmentId": infra.railway_environment_id,
        "imageTag": infra.image_tag,
        "runtimeKind": infra.runtime_kind,
        "runtimeModel": infra.runtime_model,
        "lastError": infra.last_error,  # redacted where it is written (provider_failed)
        "createdAt": _iso(infra.created_at),
        "boundAt": _iso(infra.bound_at),
        "tornDownAt": _iso(infra.torn_down_at),
        "resources": [
            {"toolId": r.tool_id, "resourceId": r.resource_id, "status": r.status, "lastError": r.last_error,
             "provisionedAt": _iso(r.provisioned_at), "destroyedAt": _iso(r.destroyed_at)}
            for r in resources
        ],
    }


__all__ = [
    "instance_abandon_creation", "instance_create", "instance_destroy", "instance_redeploy", "status_batch", "teardown_retry",
    "local_fleet_start", "local_fleet_stop", "live_infra", "gateway_token", "infra_ref", "save_ref", "instance_info",
]
