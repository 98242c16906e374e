"""One JSON error shape for the whole API: `{"error": "<message>", ...}`.

Validation errors name the field in the message (`"agentName: Not a valid string."`) and list
every field under `fields`; domain errors carry their own status and `code`. Nothing reaches the
client as an HTML page or a bare 500.

A database that cannot be reached (Django's OperationalError or InterfaceError: refused, timed out,
connection lost mid-request) is a 503 `database_unavailable` with a Retry-After header, from DRF
views and from plain Django views (handler500) alike: the outage is temporary and the client may
retry. Django drops the broken connection when the request ends (CONN_HEALTH_CHECKS), so the
first request after the database is back succeeds without a restart.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from convos.errors import DomainError

logger = logging.getLogger(__name__)
# Seconds a client is told to wait before retrying while a database is unreachable.
DATABASE_RETRY_AFTER_S = 5
_DATABASE_DOWN = {"error": "A database is unavailable; retry shortly", "code": "database_unavailable"}


def _database_down(exc: BaseException) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError))


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
        retry_after = getattr(exc, "retry_after_s", None)
        return Response(body, status=exc.status_code, headers={"Retry-After": str(retry_after)} if retry_after else None)
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes", "code": "too_large"},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if _database_down(exc):
        # The driver's message names hosts and users: it goes to the log (redacted), not the client.
        logger.warning("database unavailable in %s: %s: %s", context.get("view").__class__.__name__, exc.__class__.__name__, exc)
        return Response(dict(_DATABASE_DOWN), status=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})
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
    # Django calls handler500 inside its `except`, so the exception is still current here.
    if _database_down(sys.exc_info()[1]):
        response = JsonResponse(dict(_DATABASE_DOWN), status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    return JsonResponse({"error": "Internal error", "code": "internal"}, status=500)
