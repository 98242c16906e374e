"""The one door from the pool into services. Its functions mirror the services API of seed 002.

The pool imports this module and nothing else of services_app (no models, no providers). With
SERVICES_URL set every call goes over HTTP to the services API; unset, the same functions run in
process. Either way they take and return plain JSON-able values and raise `ServicesError` (a
DomainError whose `code` says what failed), so the pool cannot tell the difference.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings

from services_app import deploy_states, http_client
from services_app.services.errors import ServicesError
from services_app.signals import self_provision_requested

__all__ = [
    "deploy_states", "ServicesError", "self_provision_requested", "create_instance", "abandon_creation", "destroy", "status_batch", "configure", "convos_status", "chat", "reset",
    "redeploy", "instance_for_token", "registry", "check_user_config", "provision_tool", "destroy_tool", "teardown_retry", "provider_statuses",
    "instance_info", "orphan_sweep",
]


def _remote() -> bool:
    return bool(settings.SERVICES_URL)


def _local():
    from services_app import services  # imported lazily: over HTTP the pool needs none of it

    return services


def _q(value: str) -> str:
    return quote(value, safe="")


def create_instance(instance_id: str) -> dict[str, str]:
    """POST /create-instance -> {instanceId, url}"""
    if _remote():
        return http_client.call("POST", "create-instance", {"instanceId": instance_id})
    return _local().instance_create(instance_id=instance_id)


def abandon_creation(instance_id: str) -> dict[str, Any]:
    """POST /abandon-creation/:instanceId -> {ok, found}: destroy whatever a creation that never
    finished left, recorded by services or only at the provider."""
    if _remote():
        return http_client.call("POST", f"abandon-creation/{_q(instance_id)}", {})
    return _local().instance_abandon_creation(instance_id=instance_id)


def destroy(instance_id: str) -> dict[str, Any]:
    """DELETE /destroy/:instanceId -> {ok, pendingResources}"""
    if _remote():
        return http_client.call("DELETE", f"destroy/{_q(instance_id)}")
    return _local().instance_destroy(instance_id=instance_id)


def status_batch(instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """POST /status/batch -> {instanceId: {status, deployStatus, healthy, url}}"""
    if _remote():
        return http_client.call("POST", "status/batch", {"instanceIds": instance_ids})
    return _local().status_batch(instance_ids=instance_ids)


def configure(instance_id: str, *, agent_name: str, instructions: str, join_url: str | None = None,
              model: str | None = None, update: bool = False, self_provision_tools: tuple[str, ...] | list[str] = (),
              profile_image: str | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """POST /configure/:instanceId -> {ok, conversationId, inviteUrl, joined, status}

    `update`: push a new name and instructions to an instance that is already bound (template sync).
    `self_provision_tools`: what the bound instance may then provision for itself."""
    if _remote():
        body = {"agentName": agent_name, "instructions": instructions, "joinUrl": join_url, "model": model, "update": update,
                "selfProvisionTools": list(self_provision_tools), "profileImage": profile_image, "metadata": metadata or {}}
        return http_client.call("POST", f"configure/{_q(instance_id)}", body)
    return _local().instance_configure(instance_id=instance_id, agent_name=agent_name, instructions=instructions,
                                       join_url=join_url, model=model, update=update, self_provision_tools=self_provision_tools,
                                       profile_image=profile_image, metadata=metadata)


def convos_status(instance_id: str) -> dict[str, Any]:
    """GET /convos-status/:instanceId -> the instance's {conversationId, inboxId, pending, clean}"""
    if _remote():
        return http_client.call("GET", f"convos-status/{_q(instance_id)}")
    return _local().instance_convos_status(instance_id=instance_id)


def convos_status_batch(instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """POST /convos-status/batch {instanceIds} -> {instanceId: {conversationId, inboxId, pending, clean}
    or {error}}: many instances' conversations at once (the tick's audit and claim reconciliation)."""
    if _remote():
        return http_client.call("POST", "convos-status/batch", {"instanceIds": instance_ids})
    return _local().instance_convos_status_batch(instance_ids=instance_ids)


def chat(instance_id: str, text: str, *, sender_name: str = "operator") -> dict[str, Any]:
    """POST /chat/:instanceId {text, senderName} -> {replies}: a message to the agent (loopback channel)"""
    if _remote():
        return http_client.call("POST", f"chat/{_q(instance_id)}", {"text": text, "senderName": sender_name})
    return _local().instance_chat(instance_id=instance_id, text=text, sender_name=sender_name)


def reset(instance_id: str) -> dict[str, Any]:
    """POST /reset/:instanceId -> the instance's status after a factory reset"""
    if _remote():
        return http_client.call("POST", f"reset/{_q(instance_id)}", {})
    return _local().instance_reset(instance_id=instance_id)


def instance_for_token(token: str) -> str | None:
    """POST /instance-for-token {token} -> {instanceId}: the live instance holding this services token."""
    if _remote():
        return http_client.call("POST", "instance-for-token", {"token": token}).get("instanceId")
    return _local().instance_for_token(token=token)


def redeploy(instance_id: str) -> dict[str, bool]:
    """POST /redeploy/:instanceId -> {ok}"""
    if _remote():
        return http_client.call("POST", f"redeploy/{_q(instance_id)}", {})
    return _local().instance_redeploy(instance_id=instance_id)


def provision_tool(instance_id: str, tool_id: str, *, user_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST /provision/:instanceId/:toolId {userConfig?} -> {resourceId, config}"""
    if _remote():
        body = {"userConfig": user_config} if user_config is not None else {}
        return http_client.call("POST", f"provision/{_q(instance_id)}/{_q(tool_id)}", body)
    return _local().tool_provision(instance_id=instance_id, tool_id=tool_id, user_config=user_config)


def destroy_tool(instance_id: str, tool_id: str, resource_id: str) -> dict[str, bool]:
    """DELETE /destroy/:instanceId/:toolId/:resourceId -> {ok}"""
    if _remote():
        return http_client.call("DELETE", f"destroy/{_q(instance_id)}/{_q(tool_id)}/{_q(resource_id)}")
    return _local().tool_destroy(instance_id=instance_id, tool_id=tool_id, resource_id=resource_id)


def check_user_config(tool_id: str, user_config: dict[str, Any]) -> dict[str, Any]:
    """POST /check-user-config/:toolId {userConfig} -> {ok, toolId, variables}; 400 names the bad field"""
    if _remote():
        return http_client.call("POST", f"check-user-config/{_q(tool_id)}", {"userConfig": user_config})
    return _local().user_config_check(tool_id=tool_id, user_config=user_config)


def registry() -> list[dict[str, Any]]:
    """GET /registry -> [{toolId, name, provisioning, always, enabled, reason}]"""
    if _remote():
        return http_client.call("GET", "registry")
    return _local().registry()


def teardown_retry() -> dict[str, int]:
    """POST /teardown/retry -> {pending, finished}: finish resources whose destroy failed."""
    if _remote():
        return http_client.call("POST", "teardown/retry", {})
    return _local().teardown_retry()


def provider_statuses() -> list[dict[str, Any]]:
    """GET /providers -> [{provider, lastError, lastErrorAt, lastOkAt}]"""
    if _remote():
        return http_client.call("GET", "providers")
    return _local().provider_statuses()


def instance_info(instance_id: str) -> dict[str, Any]:
    """GET /instances/:instanceId -> {provider, url, railway ids, imageTag, createdAt, tornDownAt,
    lastError, resources: [{toolId, resourceId, status, provisionedAt, destroyedAt}]}; no secrets.
    404 (`not_found`) when services holds nothing for it."""
    if _remote():
        return http_client.call("GET", f"instances/{_q(instance_id)}")
    return _local().instance_info(instance_id=instance_id)


def orphan_sweep(*, delete_allowed: bool = True) -> dict[str, Any]:
    """POST /orphans/sweep {deleteAllowed} -> {at, delete, graceMs, providers: {name: {listed, orphans,
    deleted, deleteErrors}}, errors}: what the providers hold under the pool's names that no row
    records (services_app/services/orphans.py); deleted only with ORPHAN_SWEEP_DELETE and deleteAllowed."""
    if _remote():
        return http_client.call("POST", "orphans/sweep", {"deleteAllowed": delete_allowed})
    return _local().orphans_sweep(delete_allowed=delete_allowed)
