"""The services layer: instance infra lifecycle and calls into running instances.

Every function here is one operation of the services API (seed 002); the facade the pool uses and
the services HTTP views call these and nothing else. Writes go to the `services` alias.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from convos.concurrency import map_concurrently
from convos.errors import DomainError
from convos.redaction import redact
from services_app import instance_secrets, runtime_client
from services_app.models import InstanceInfra
from services_app.providers import get_provider
from services_app.providers.base import DEPLOYING, FAILED, SLEEPING, SUCCESS, InfraRef, ProviderError

logger = logging.getLogger(__name__)
DB = "services"


class ServicesError(DomainError):
    """A services operation failed. `code` tells the pool what happened (e.g. `already_bound`)."""

    status_code = 502
    code = "services_failed"


# --- helpers ----------------------------------------------------------------------------------------
def _ref(infra: InstanceInfra) -> InfraRef:
    return InfraRef(
        instance_id=infra.instance_id,
        url=infra.url,
        railway_project_id=infra.railway_project_id,
        railway_service_id=infra.railway_service_id,
        railway_environment_id=infra.railway_environment_id,
        image_tag=infra.image_tag,
        provider_state=dict(infra.provider_state or {}),
    )


def _save_ref(infra: InstanceInfra, ref: InfraRef) -> None:
    infra.url = ref.url
    infra.provider_state = ref.provider_state
    infra.save(using=DB, update_fields=["url", "provider_state", "updated_at"])


def _infra(instance_id: str) -> InstanceInfra:
    try:
        return InstanceInfra.objects.using(DB).get(instance_id=instance_id)
    except InstanceInfra.DoesNotExist:
        raise ServicesError(f"Unknown instance {instance_id}", code="not_found", status_code=404) from None


def _gateway_token(infra: InstanceInfra) -> str:
    return instance_secrets.gateway_token(instance_id=infra.instance_id, nonce=infra.secret_nonce)


def _runtime_variables(*, instance_id: str, gateway_token: str, services_token: str) -> dict[str, str]:
    variables = {
        "INSTANCE_ID": instance_id,
        "GATEWAY_TOKEN": gateway_token,
        "OPENCLAW_GATEWAY_TOKEN": gateway_token,
        "INSTANCE_SERVICES_TOKEN": services_token,
        "XMTP_ENV": settings.XMTP_ENV,
        "POOL_URL": settings.POOL_URL,
    }
    if settings.OPENCLAW_PRIMARY_MODEL:
        variables["OPENCLAW_PRIMARY_MODEL"] = settings.OPENCLAW_PRIMARY_MODEL
    return variables


# --- infra lifecycle ----------------------------------------------------------------------------------
def instance_create(*, instance_id: str) -> dict[str, str]:
    """Create the instance at the infra provider with its secrets in place before it boots."""
    if InstanceInfra.objects.using(DB).filter(instance_id=instance_id).exists():
        raise ServicesError(f"Instance {instance_id} already exists", code="exists", status_code=409)
    provider = get_provider()
    nonce = instance_secrets.new_nonce()
    services_token = instance_secrets.new_services_token()
    variables = _runtime_variables(
        instance_id=instance_id,
        gateway_token=instance_secrets.gateway_token(instance_id=instance_id, nonce=nonce),
        services_token=services_token,
    )
    try:
        ref = provider.create(instance_id=instance_id, variables=variables)
    except ProviderError as exc:
        logger.warning("create of %s failed at %s: %s", instance_id, provider.name, redact(exc.message))
        raise ServicesError(f"Could not create instance: {redact(exc.message)}", code="create_failed") from exc
    try:
        with transaction.atomic(using=DB):
            InstanceInfra.objects.using(DB).create(
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
    except Exception:
        # Without its row the instance would be an orphan nobody tears down: undo it now.
        logger.exception("recording %s failed; destroying what the provider created", instance_id)
        provider.destroy(ref)
        raise
    return {"instanceId": instance_id, "url": ref.url}


def instance_destroy(*, instance_id: str) -> dict[str, bool]:
    """Tear the instance down at the provider and forget it. Unknown instances are already gone."""
    infra = InstanceInfra.objects.using(DB).filter(instance_id=instance_id).first()
    if infra is None:
        return {"ok": True}
    provider = get_provider(infra.provider)
    try:
        provider.destroy(_ref(infra))
    except ProviderError as exc:
        infra.last_error = redact(exc.message)
        infra.save(using=DB, update_fields=["last_error", "updated_at"])
        raise ServicesError(f"Could not destroy instance {instance_id}: {infra.last_error}", code="destroy_failed") from exc
    infra.delete(using=DB)
    return {"ok": True}


def instance_redeploy(*, instance_id: str) -> dict[str, bool]:
    infra = _infra(instance_id)
    provider = get_provider(infra.provider)
    try:
        _save_ref(infra, provider.redeploy(_ref(infra)))
    except ProviderError as exc:
        raise ServicesError(f"Could not redeploy {instance_id}: {redact(exc.message)}", code="redeploy_failed") from exc
    return {"ok": True}


def _coarse_status(deploy_status: str | None, healthy: bool) -> str:
    if deploy_status in SLEEPING:
        return "sleeping"
    if deploy_status in FAILED:
        return "deploy_failed"
    if deploy_status in DEPLOYING:
        return "deploying"
    if deploy_status == SUCCESS and healthy:
        return "healthy"
    return "unreachable"


def status_batch(*, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Deploy status and health of every given instance, in one provider call per provider.

    Each value is `{"status", "deployStatus", "healthy", "url"}`; `status` is the seed's coarse
    value (deploying, deploy_failed, healthy, unreachable) plus `sleeping`, and `not_found` for an
    id services has no record of. Health checks run concurrently and never wait on one slow
    instance for longer than HEALTH_CHECK_TIMEOUT_S.
    """
    infras = list(InstanceInfra.objects.using(DB).filter(instance_id__in=instance_ids))
    by_provider: dict[str, list[InstanceInfra]] = {}
    for infra in infras:
        by_provider.setdefault(infra.provider, []).append(infra)
    deploy: dict[str, Any] = {}
    for provider_name, group in by_provider.items():
        deploy.update(get_provider(provider_name).deploy_states([_ref(i) for i in group]))

    # Only a running deployment can be healthy; sleeping or failed ones are not pinged.
    to_check = [i for i in infras if deploy.get(i.instance_id) and deploy[i.instance_id].deploy_status == SUCCESS]
    results = map_concurrently(
        lambda infra: runtime_client.health(deploy[infra.instance_id].url or infra.url, timeout=settings.HEALTH_CHECK_TIMEOUT_S),
        to_check,
        max_workers=settings.HEALTH_CHECK_CONCURRENCY,
    )
    healthy = {infra.instance_id: ok for infra, ok in zip(to_check, results)}

    statuses: dict[str, dict[str, Any]] = {}
    for instance_id in instance_ids:
        state = deploy.get(instance_id)
        if state is None:
            statuses[instance_id] = {"status": "not_found", "deployStatus": None, "healthy": False, "url": ""}
            continue
        ok = healthy.get(instance_id, False)
        statuses[instance_id] = {
            "status": _coarse_status(state.deploy_status, ok),
            "deployStatus": state.deploy_status,
            "healthy": ok,
            "url": state.url,
        }
    return statuses


# --- calls into a running instance --------------------------------------------------------------------
def _runtime_error(instance_id: str, exc: runtime_client.RuntimeCallError) -> ServicesError:
    if exc.status_code == 409:
        return ServicesError(f"Instance {instance_id} is already bound to a conversation", code="already_bound", status_code=409)
    return ServicesError(f"Instance {instance_id}: {redact(exc.message)}", code="runtime_failed")


def instance_configure(
    *,
    instance_id: str,
    agent_name: str,
    instructions: str,
    join_url: str | None = None,
    profile_image: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Push name and instructions to the running instance (its /pool/provision) and bind it to a
    conversation; returns the instance's answer (inviteUrl, conversationId, joined, status)."""
    infra = _infra(instance_id)
    body: dict[str, Any] = {"agentName": agent_name, "instructions": instructions}
    if join_url:
        body["joinUrl"] = join_url
    if profile_image:
        body["profileImage"] = profile_image
    if metadata:
        body["metadata"] = metadata
    try:
        answer = runtime_client.provision(
            infra.url, token=_gateway_token(infra), body=body, timeout=settings.PROVISION_TIMEOUT_S
        )
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(instance_id, exc) from exc
    return {
        "ok": True,
        "conversationId": answer.get("conversationId"),
        "inviteUrl": answer.get("inviteUrl"),
        "joined": bool(answer.get("joined")),
        "status": answer.get("status") or "created",
    }


def instance_convos_status(*, instance_id: str) -> dict[str, Any]:
    infra = _infra(instance_id)
    try:
        return runtime_client.convos_status(infra.url, token=_gateway_token(infra), timeout=settings.HEALTH_CHECK_TIMEOUT_S * 2)
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(instance_id, exc) from exc


def instance_reset(*, instance_id: str) -> dict[str, Any]:
    """Factory-reset the instance's conversation state; returns its /convos/status afterwards."""
    infra = _infra(instance_id)
    try:
        answer = runtime_client.convos_reset(infra.url, token=_gateway_token(infra), timeout=settings.PROVISION_TIMEOUT_S)
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(instance_id, exc) from exc
    return answer.get("status") or {}


def registry() -> list[dict[str, Any]]:
    """Tools that can be provisioned (the plugins arrive with the services issue)."""
    return []


# --- local development fleet ----------------------------------------------------------------------------
def local_fleet_stop() -> list[str]:
    """Stop every local instance's process, keeping its data so `local_fleet_start` resumes it."""
    stopped: list[str] = []
    provider = get_provider("local")
    for infra in InstanceInfra.objects.using(DB).filter(provider="local"):
        _save_ref(infra, provider.stop(_ref(infra)))  # type: ignore[attr-defined]
        stopped.append(infra.instance_id)
    return stopped


def local_fleet_start() -> list[str]:
    """Start every stopped or exited local instance again on its own data."""
    started: list[str] = []
    provider = get_provider("local")
    for infra in InstanceInfra.objects.using(DB).filter(provider="local"):
        ref = _ref(infra)
        try:
            new_ref = provider.start(ref)  # type: ignore[attr-defined]
        except ProviderError as exc:
            logger.warning("local instance %s could not start: %s", infra.instance_id, exc.message)
            continue
        if new_ref is not ref:
            _save_ref(infra, new_ref)
            started.append(infra.instance_id)
    return started
