"""The pool's HTTP client for the services API, used when SERVICES_URL is set.

Errors come back as ServicesError with the services' own message, code and status, so the pool
behaves the same whether services runs in process or behind HTTP.
"""
from __future__ import annotations

from typing import Any

import requests
from django.conf import settings

from services_app.services.errors import ServicesError

# Status batches health-check the whole fleet; configure waits for the instance's provisioning.
_TIMEOUTS = {"status/batch": 300.0, "configure": None, "reset": None}


def _timeout(path: str) -> float:
    for prefix, value in _TIMEOUTS.items():
        if path.startswith(prefix):
            return value if value is not None else settings.PROVISION_TIMEOUT_S + 15
    return 120.0


def call(method: str, path: str, body: dict | None = None) -> Any:
    url = f"{settings.SERVICES_URL.rstrip('/')}/{path}"
    try:
        response = requests.request(
            method, url, json=body, timeout=_timeout(path),
            headers={"Authorization": f"Bearer {settings.SERVICES_API_KEY}"},
        )
    except requests.RequestException as exc:
        raise ServicesError(f"Services unreachable ({exc.__class__.__name__})", code="services_unreachable") from exc
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400:
        error = payload if isinstance(payload, dict) else {}
        raise ServicesError(
            error.get("error") or f"Services answered {response.status_code}",
            code=error.get("code") or "services_failed",
            status_code=response.status_code if response.status_code < 500 else 502,
        )
    if payload is None:
        raise ServicesError("Services answered a body that is not JSON", code="services_failed")
    return payload
