"""One JSON error shape for the whole API: `{"error": "<message>", ...}`.

Validation errors name the field in the message (`"agentName: Not a valid string."`) and list
every field under `fields`; domain errors carry their own status and `code`. Nothing reaches the
client as an HTML page or a bare 500.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from convos.errors import DomainError

logger = logging.getLogger(__name__)


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        messages: list[str] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            messages += _flatten(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
        return messages
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def api_exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, DomainError):
        body = {"error": exc.message, "code": exc.code}
        if getattr(exc, "field", None):
            body["fields"] = {exc.field: [exc.message]}
        return Response(body, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": "Request body is too large"}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response({"error": "Internal error", "code": "internal"}, status=500)
    if isinstance(exc, exceptions.ValidationError):
        messages = _flatten(exc.detail)
        response.data = {"error": "; ".join(messages) or "Invalid request", "code": "invalid", "fields": exc.detail}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = {"error": str(detail), "code": getattr(exc, "default_code", "error")}
    return response


def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse({"error": f"Not found: {request.path}", "code": "not_found"}, status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse({"error": "Internal error", "code": "internal"}, status=500)
