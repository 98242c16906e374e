"""Bearer-key authentication for the REST API.

`POOL_API_KEY` is the operator key with every right. Later, API clients get their own keys.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: DRF puts this in `request.user`."""

    name: str
    owner_id: str | None = None
    is_operator: bool = False

    @property
    def is_authenticated(self) -> bool:
        return True


OPERATOR = ApiPrincipal(name="operator", owner_id=None, is_operator=True)


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):  # type: ignore[override]
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # -> NotAuthenticated (401) from the permission check
        token = bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <key>'")
        if hmac.compare_digest(token.encode(), settings.POOL_API_KEY.encode()):
            return OPERATOR, None
        raise exceptions.AuthenticationFailed("Invalid API key")

    def authenticate_header(self, request) -> str:
        # Having a header makes DRF answer 401 instead of 403 for missing credentials.
        return 'Bearer realm="convos-pool"'
