"""Select the infra provider named by INFRA_PROVIDER."""
from __future__ import annotations

from django.conf import settings

from services_app.providers.base import InfraProvider, ProviderError


def get_provider(name: str | None = None) -> InfraProvider:
    name = name or settings.INFRA_PROVIDER
    if name == "local":
        from services_app.providers.local import LocalProvider

        return LocalProvider.from_settings()
    if name == "fake":  # benchmarks and tests only: in-memory instances, no processes
        from services_app.providers.fake import FakeProvider

        return FakeProvider.from_settings()
    if name == "railway":
        from services_app.providers.railway import RailwayProvider

        return RailwayProvider.from_settings()
    raise ProviderError(f"Unknown INFRA_PROVIDER {name!r} (available: local, railway, fake)", permanent=True)
