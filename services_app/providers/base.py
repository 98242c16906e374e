"""The seam between the services layer and an infra provider (local processes, Railway).

Provider modules import no models and raise only ProviderError; the services layer decides what
to persist. Deploy statuses use Railway's DeploymentStatus vocabulary whatever the provider
(services_app/deploy_states.py maps them to the coarse states the pool reads).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# The shape of an instance id (convos/converters.py IdConverter): a name the pool gave a resource
# is a fixed prefix plus exactly this, so anything else in an account is never taken for the pool's.
INSTANCE_ID_RE = r"[A-Za-z0-9_-]{1,64}"


class ProviderError(Exception):
    """A provider call failed. `permanent` says whether retrying the same call can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass
class InfraRef:
    """What a provider needs to find an instance again (built from an instance_infra row)."""

    instance_id: str
    url: str = ""
    railway_project_id: str = ""
    railway_service_id: str = ""
    railway_environment_id: str = ""
    image_tag: str = ""
    provider_state: dict = field(default_factory=dict)


@dataclass
class DeployState:
    """Latest deployment status (Railway vocabulary, None when unknown) and public URL."""

    deploy_status: str | None
    url: str = ""


@dataclass(frozen=True)
class OwnedResource:
    """A resource found at a provider under a name the pool gives (`list_owned`): the orphan
    sweep (services_app/services/orphans.py) compares these with the rows that record them."""

    resource_id: str  # the provider's id (Railway project id, pid or data dir, key hash, inbox id, number)
    name: str  # the name the pool gave it, e.g. "convos-agent-<instance id>"
    instance_id: str  # the instance the name ties it to
    created_at: datetime | None = None  # None: the provider does not say (never older than grace)


def owned_instance_id(name: str, prefix: str) -> str | None:
    """The instance id in a name the pool gave (`prefix` + instance id), else None."""
    match = re.fullmatch(re.escape(prefix) + f"({INSTANCE_ID_RE})", name or "")
    return match.group(1) if match else None


class InfraProvider(Protocol):
    name: str

    def create(self, *, instance_id: str, variables: dict[str, str]) -> InfraRef:
        """Create and start the instance with every variable in place before its first boot."""

    def destroy(self, ref: InfraRef) -> None:
        """Remove the instance and everything it holds at the provider. Missing is not an error."""

    def deploy_states(self, refs: list[InfraRef], *, full: bool = True) -> dict[str, DeployState]:
        """Deploy state of every given instance. `full`: a sweep over everything the provider holds
        (O(1) calls whatever the number of refs; the only answer that may call an instance REMOVED
        because it is absent). Not `full`: the services layer asks about a few instances only, and
        a provider may then ask about each (Railway: aliased lookups, one call per 50). A provider
        whose answers cost nothing may ignore the difference."""

    def redeploy(self, ref: InfraRef) -> InfraRef:
        """Restart the instance on the current image; returns the (possibly updated) reference."""

    def destroy_unrecorded(self, instance_id: str) -> bool:
        """Remove whatever the provider holds for an instance services has no record of (a create
        whose answer was lost, a worker killed before it recorded one), found by the name the pool
        gave it. True if something was found and removed."""

    def list_owned(self) -> list[OwnedResource]:
        """Every instance this provider holds under a name the pool gives, recorded or not (the
        orphan sweep's input). Raises ProviderError when the listing is incomplete: a partial
        listing must never pass for the whole."""

    def destroy_owned(self, resource: OwnedResource) -> None:
        """Remove one resource `list_owned` returned. Missing is not an error."""
