"""The one door from the pool into services. Its functions mirror the services API of seed 002.

The pool imports this module and nothing else of services_app (no models, no providers), so that
services can move behind HTTP without the pool changing: every function takes and returns plain
JSON-able values and raises `ServicesError` (a DomainError whose `code` says what failed).
"""
from __future__ import annotations

from typing import Any

from services_app import services
from services_app.services import ServicesError

__all__ = [
    "ServicesError",
    "create_instance",
    "destroy",
    "status_batch",
    "configure",
    "convos_status",
    "reset",
    "redeploy",
    "registry",
]


def create_instance(instance_id: str) -> dict[str, str]:
    """POST /create-instance -> {instanceId, url}"""
    return services.instance_create(instance_id=instance_id)


def destroy(instance_id: str) -> dict[str, bool]:
    """DELETE /destroy/:instanceId -> {ok}"""
    return services.instance_destroy(instance_id=instance_id)


def status_batch(instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """POST /status/batch -> {instanceId: {status, deployStatus, healthy, url}}"""
    return services.status_batch(instance_ids=instance_ids)


def configure(
    instance_id: str,
    *,
    agent_name: str,
    instructions: str,
    join_url: str | None = None,
    profile_image: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST /configure/:instanceId -> {ok, conversationId, inviteUrl, joined, status}"""
    return services.instance_configure(
        instance_id=instance_id,
        agent_name=agent_name,
        instructions=instructions,
        join_url=join_url,
        profile_image=profile_image,
        metadata=metadata,
    )


def convos_status(instance_id: str) -> dict[str, Any]:
    """GET /convos-status/:instanceId -> the instance's {conversationId, inboxId, pending, clean}"""
    return services.instance_convos_status(instance_id=instance_id)


def reset(instance_id: str) -> dict[str, Any]:
    """POST /reset/:instanceId -> the instance's status after a factory reset"""
    return services.instance_reset(instance_id=instance_id)


def redeploy(instance_id: str) -> dict[str, bool]:
    """POST /redeploy/:instanceId -> {ok}"""
    return services.instance_redeploy(instance_id=instance_id)


def registry() -> list[dict[str, Any]]:
    """GET /registry -> [{toolId, name, provisioning, ...}]"""
    return services.registry()
