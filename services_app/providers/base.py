"""The seam between the services layer and an infra provider (local processes, Railway).

Provider modules import no models and raise only ProviderError; the services layer decides what
to persist. Deploy statuses use Railway's DeploymentStatus vocabulary whatever the provider
(services_app/deploy_states.py maps them to the coarse states the pool reads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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


class InfraProvider(Protocol):
    name: str

    def create(self, *, instance_id: str, variables: dict[str, str]) -> InfraRef:
        """Create and start the instance with every variable in place before its first boot."""

    def destroy(self, ref: InfraRef) -> None:
        """Remove the instance and everything it holds at the provider. Missing is not an error."""

    def deploy_states(self, refs: list[InfraRef]) -> dict[str, DeployState]:
        """Deploy state of every given instance in O(1) provider calls."""

    def redeploy(self, ref: InfraRef) -> InfraRef:
        """Restart the instance on the current image; returns the (possibly updated) reference."""

    def destroy_unrecorded(self, instance_id: str) -> bool:
        """Remove whatever the provider holds for an instance services has no record of (a create
        whose answer was lost, a worker killed before it recorded one), found by the name the pool
        gave it. True if something was found and removed."""

