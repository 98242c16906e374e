"""Select the infra provider named by INFRA_PROVIDER."""
from __future__ import annotations

from django.conf import settings

from services_app.providers.base import InfraProvider, ProviderError


def get_provider(name: str | None = None) -> InfraProvider:
    name = name or settings.INFRA_PROVIDER
    if name == "local":
        from services_app.providers.local import LocalProvider

        return LocalProvider.from_settings()
    raise ProviderError(f"Unknown INFRA_PROVIDER {name!r} (available: local)", permanent=True)
