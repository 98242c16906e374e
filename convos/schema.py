"""The OpenAPI 3 schema's shared parts (drf-spectacular): the one error shape, the error responses
the views declare, the three bearer-token schemes, and the plain Django routes (`/healthz`) that
drf-spectacular cannot see. Served at /api/schema/ with Swagger UI at /api/docs/ (convos/urls.py).

The auth extensions name the apps' classes by dotted path, so this core module imports no app.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as _SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers (convos/exceptions.py): a message, a machine-readable code and,
    for a validation error, the message(s) of each field."""

    error = serializers.CharField(help_text="What went wrong, for a person (names the field for a validation error).")
    code = serializers.CharField(help_text="Machine-readable: `invalid`, `not_authenticated`, `permission_denied`, "
                                           "`not_found`, `conflict`, `throttled`, `unavailable`, ...")
    fields = serializers.DictField(child=serializers.JSONField(), required=False,
                                   help_text="Validation errors only: each field's messages.")


_WHY = {
    400: "Invalid request: the body, a query parameter or a header (see `fields`).",
    401: "No credentials, or unknown ones.",
    403: "The credentials may not do this.",
    404: "No such object (or not the caller's).",
    409: "The object's state does not allow this now.",
    413: "Request body is too large.",
    429: "Too many requests from this client.",
    502: "An upstream service failed.",
    503: "Not available right now (no idle instance, provider or database away).",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """`responses={**errors(400, 404), 200: ...}`: error responses with the one error shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=_WHY.get(code, "Error")) for code in codes}


# The usual errors of an authenticated call (with or without a path id or a body).
AUTH_ERRORS = (401, 403, 429)


def obj(name: str, **fields: serializers.Field) -> serializers.Serializer:
    """A named inline response shape."""
    return inline_serializer(name=name, fields=fields)


OK_INSTANCE = obj("InstanceTransition", ok=serializers.BooleanField(), instanceId=serializers.CharField(),
                  status=serializers.CharField())


class _Bearer(OpenApiAuthenticationExtension):
    description = ""

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {"type": "http", "scheme": "bearer", "description": self.description}


class PoolKeyScheme(_Bearer):
    target_class = "pool_app.auth.ApiKeyAuthentication"
    name = "poolKey"
    description = "The operator's POOL_API_KEY or an API client's key."


class InstanceTokenScheme(_Bearer):
    target_class = "pool_app.auth.InstanceTokenAuthentication"
    name = "instanceToken"
    description = "An instance's own INSTANCE_SERVICES_TOKEN (routes an instance calls about itself)."


class ServicesKeyScheme(_Bearer):
    target_class = "services_app.auth.ServicesAuthentication"
    name = "servicesKey"
    description = "SERVICES_API_KEY (the pool), or on some routes an instance's own services token."


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Page size, 1..200 (default 50)."),
    OpenApiParameter("offset", int, description="Items to skip (default 0)."),
]


class AutoSchema(_SpectacularAutoSchema):
    """The project's views are plain APIViews with an inner `InputSerializer` and `Response(dict)`:
    the request body is that serializer (POST/PUT/PATCH), the answer a free-form object unless the
    view says more with @extend_schema, and every operation lists the errors it can answer (the one
    error shape): 401/403 when authenticated, 429 when throttled, 404 with a path id, 400 with a body."""

    def get_request_serializer(self) -> Any:
        if self.method in ("POST", "PUT", "PATCH"):
            return getattr(self.view, "InputSerializer", None)
        return None

    def get_response_serializers(self) -> Any:
        return {200: OpenApiTypes.OBJECT}

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Any) -> str:
        # Inner `InputSerializer`s of different views: "PoolClaimInput", not one clashing "Input".
        parts = type(serializer).__qualname__.split(".")
        name = super().get_serializer_name(serializer, direction)
        if len(parts) > 1 and name == parts[-1]:
            name = parts[-2].removesuffix("Api") + name
        return name.lstrip("_")

    def get_tags(self) -> list[str]:
        parts = [p for p in self.path.strip("/").split("/") if p]
        if not parts:
            return ["root"]
        return [parts[1] if parts[0] == "api" and len(parts) > 1 else parts[0]]

    def _default_error_codes(self) -> list[int]:
        codes = []
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append(400)
        if getattr(self.view, "authentication_classes", None):
            codes += [401, 403]
        if "{" in self.path:
            codes.append(404)
        if getattr(self.view, "throttle_classes", None):
            codes.append(429)
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        if direction == "response":
            for code in self._default_error_codes():
                if str(code) not in responses:
                    responses[str(code)] = self._get_response_for_code(errors(code)[code], str(code), direction=direction)
        return responses


def add_plain_django_routes(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """Postprocessing hook: document `/healthz` (a plain Django view, not DRF)."""
    databases = {"type": "object", "additionalProperties": {"type": "string"},
                 "description": "Each database alias: `ok` or `unreachable: <ExceptionClass>`."}
    body = {"type": "object", "properties": {"ok": {"type": "boolean"}, "databases": databases}, "required": ["ok", "databases"]}
    result.setdefault("paths", {})["/healthz"] = {"get": {
        "operationId": "healthz_retrieve",
        "summary": "Whether this web process reaches each of its databases (no auth).",
        "tags": ["healthz"],
        "security": [{}],
        "responses": {
            "200": {"description": "Every database answers.", "content": {"application/json": {"schema": body}}},
            "503": {"description": "A database does not answer.", "content": {"application/json": {"schema": body}}},
        },
    }}
    return result
