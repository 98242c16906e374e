"""`GET /healthz`: no auth; says whether this web process can reach each of its databases.

A database that does not answer is named by its alias (`{"ok": false, "databases": {"pool":
"unreachable: OperationalError"}}`, 503). The endpoint is public, so the answer carries only the
exception's class: the driver's message (host, port, user) goes to the log, never to the client.
Nothing needs restarting when the database is back: Django drops a broken connection when the
request ends (CONN_HEALTH_CHECKS) and the next probe opens a new one.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request) -> JsonResponse:
    databases: dict[str, str] = {}
    for alias in settings.DATABASES:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            databases[alias] = "ok"
        except Exception as exc:  # report, never raise: this endpoint is what a load balancer polls
            # The log lines are redacted (convos/log_redaction.py); libpq never prints the password.
            logger.warning("healthz: database %r is unreachable: %s: %s", alias, exc.__class__.__name__, str(exc).strip())
            databases[alias] = f"unreachable: {exc.__class__.__name__}"
    ok = all(value == "ok" for value in databases.values())
    return JsonResponse({"ok": ok, "databases": databases}, status=200 if ok else 503)
