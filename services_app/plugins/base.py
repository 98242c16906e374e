"""The seam between the services layer and tool providers (OpenRouter, AgentMail, Telnyx, Bankr,
wallet). Plugins import no models and raise only ProviderError; the services layer decides what
to persist. Secrets a plugin creates travel back in `env_vars` (injected into the instance) and
are never stored by services.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from services_app.providers.base import OwnedResource, ProviderError

__all__ = ["OwnedResource", "ProviderError", "ProvisionedResource", "ToolPlugin", "POOL", "USER", "MAX_LIST_PAGES", "NAME_PREFIX"]

# Every tool resource the pool makes is named (or labelled) "convos-<instance id>" at its provider.
NAME_PREFIX = "convos-"
MAX_LIST_PAGES = 1_000  # guards the listing loops against a cursor that never advances

POOL = "pool"  # the pool provisions it with its own provider account
USER = "user"  # the user brings credentials (userConfig); services only validates and injects them


@dataclass
class ProvisionedResource:
    resource_id: str  # the provider's id for it (key hash, inbox id, phone number id, address)
    config: dict[str, Any] = field(default_factory=dict)  # non-secret, stored in instance_services
    env_vars: dict[str, str] = field(default_factory=dict)  # secrets for the instance; never stored


class ToolPlugin(Protocol):
    tool_id: str  # "openrouter", "wallet", "email", "sms", "crypto"
    name: str
    provisioning: tuple[str, ...]  # modes it supports: POOL and/or USER
    always: bool  # provisioned for every instance at creation (OpenRouter, wallet)

    def enabled(self) -> tuple[bool, str]:
        """(True, "") when configured; (False, why not) otherwise, e.g. "OPENROUTER_MANAGEMENT_KEY is not set"."""

    def create(self, *, instance_id: str) -> ProvisionedResource:
        """Provision the resource for the instance with the pool's account (mode POOL)."""

    def destroy(self, *, resource_id: str) -> None:
        """Tear the resource down. Already gone (404) counts as done."""

    def user_env_vars(self, user_config: dict[str, Any]) -> dict[str, str]:
        """Mode USER: check the user's credentials' shape (ProviderError naming the missing or bad
        field, permanent=True) and return the variables to inject. Never logs the values."""

    # Optional (the orphan sweep): plugins that can list what the pool made define
    #   def list_owned(self) -> list[OwnedResource]
    # returning every resource named NAME_PREFIX + an instance id, and only those; resource_id is
    # what destroy() takes. A plugin without it cannot be swept (its docstring says why).
