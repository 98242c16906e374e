"""Who may call the services API.

- The pool: `Authorization: Bearer <SERVICES_API_KEY>` (shared secret), every route.
- An instance (self-provisioning): `Authorization: Bearer <INSTANCE_SERVICES_TOKEN>`, checked against
  the hash in its instance_infra row; it may act only on itself.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission

from convos.auth import bearer_token
from services_app.services.infra import instance_for_token


@dataclass(frozen=True)
class ServicesCaller:
    name: str
    instance_id: str | None = None  # set for an instance calling for itself

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_pool(self) -> bool:
        return self.instance_id is None


class ServicesAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):  # type: ignore[override]
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        if hmac.compare_digest(token.encode(), settings.SERVICES_API_KEY.encode()):
            return ServicesCaller(name="pool"), None
        instance_id = instance_for_token(token=token)
        if instance_id is not None:
            return ServicesCaller(name=f"instance:{instance_id}", instance_id=instance_id), None
        raise exceptions.AuthenticationFailed("Invalid services token")

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="convos-services"'


class IsPool(BasePermission):
    message = "Only the pool may call this route"

    def has_permission(self, request, view) -> bool:
        return bool(getattr(request.user, "is_pool", False))


class IsPoolOrSameInstance(BasePermission):
    """The pool, or an instance acting on its own id (`instance_id` in the URL)."""

    message = "An instance may only act on itself"

    def has_permission(self, request, view) -> bool:
        caller = request.user
        if getattr(caller, "is_pool", False):
            return True
        return caller is not None and getattr(caller, "instance_id", None) == view.kwargs.get("instance_id")
