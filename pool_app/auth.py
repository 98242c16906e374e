"""Bearer-key authentication and per-client throttling for the REST API.

`POOL_API_KEY` is the operator key with every right. API clients (created in admin or with
`manage.py create_api_client`) have their own keys, stored only as hashes; what they make (claims,
templates) records their owner id, and they see only their own instances and private templates.
Settings name these classes by dotted path (REST_FRAMEWORK).
"""
from __future__ import annotations

import hmac
import logging

from django.conf import settings
from rest_framework import authentication, exceptions, throttling

from dataclasses import dataclass

from convos.auth import OPERATOR, ApiPrincipal, bearer_token
from pool_app.services.api_clients import api_client_for_key
from services_app import facade as services

logger = logging.getLogger(__name__)


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
        client = api_client_for_key(token)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        return ApiPrincipal(
            name=f"client:{client.pk}", owner_id=client.owner_id, client_id=client.pk,
            rate_limit_per_minute=client.rate_limit_per_minute,
        ), None

    def authenticate_header(self, request) -> str:
        # Having a header makes DRF answer 401 instead of 403 for missing credentials.
        return 'Bearer realm="convos-pool"'


class ClientRateThrottle(throttling.SimpleRateThrottle):
    """Each API client's own requests-per-minute limit (none for the operator or unlimited clients)."""

    scope = "client"

    def get_rate(self) -> str | None:
        return None  # set per request in allow_request

    def allow_request(self, request, view) -> bool:
        principal = request.user
        limit = getattr(principal, "rate_limit_per_minute", None)
        if not limit:
            return True
        self.rate = f"{limit}/m"
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache (Redis) is down: a rate limit is not worth a 500
            # convos/cache.py already makes Redis failures misses; this covers any other backend.
            logger.warning("rate limit of client %s not checked: the cache is unavailable: %s: %s",
                           request.user.client_id, exc.__class__.__name__, exc)
            return True

    def get_cache_key(self, request, view) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": request.user.client_id}


@dataclass(frozen=True)
class InstanceCaller:
    """An instance calling the pool about itself, with its own services token."""

    instance_id: str
    is_operator: bool = False
    owner_id: None = None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def name(self) -> str:
        return f"instance:{self.instance_id}"


class InstanceTokenAuthentication(authentication.BaseAuthentication):
    """The instance's services token (INSTANCE_SERVICES_TOKEN), checked by services, which holds
    only its hash."""

    def authenticate(self, request):  # type: ignore[override]
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
        if token is None:
            return None
        try:
            instance_id = services.instance_for_token(token)
        except services.ServicesError as exc:
            raise exceptions.AuthenticationFailed(f"The token could not be checked: {exc.message}") from exc
        if instance_id is None:
            raise exceptions.AuthenticationFailed("Invalid instance token")
        return InstanceCaller(instance_id=instance_id), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="convos-pool-instances"'
