"""`GET /healthz`: no auth; says whether this web process can reach each of its databases."""
from __future__ import annotations

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request) -> JsonResponse:
    databases: dict[str, str] = {}
    for alias in settings.DATABASES:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            databases[alias] = "ok"
        except Exception as exc:  # report, never raise: this endpoint is what a load balancer polls
            databases[alias] = f"error: {exc.__class__.__name__}"
    ok = all(value == "ok" for value in databases.values())
    return JsonResponse({"ok": ok, "databases": databases}, status=200 if ok else 503)
