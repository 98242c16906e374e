"""Prometheus metrics: every metric the pool exports, and the `/metrics` view that exposes them.

The client library runs in its MULTIPROCESS mode: each process (gunicorn workers, Celery worker
children, beat) writes its counters and histograms to files in PROMETHEUS_MULTIPROC_DIR, and a
scrape of any web worker merges every process's files. So a tick run by Celery and a claim served
by another gunicorn worker both show up, whichever worker answers the scrape. The library picks its
value store when it is first imported, so the settings set PROMETHEUS_MULTIPROC_DIR (a directory
under VAR_DIR unless the environment names one) before anything imports prometheus_client.
gunicorn.conf.py removes a dead worker's live-gauge files (`child_exit`).

Values that are facts about the database (instances per status, idle target, outage) are not
counted by any process: they are computed at scrape time by collectors the apps register with
`register_scrape_collector` (convos is the core and imports no app; pool_app registers its own).

`/metrics` is open when METRICS_TOKEN is unset, else it wants `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
import os
from collections.abc import Callable

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # pragma: no cover - the settings set it first
    from django.conf import settings

    settings.VAR_DIR  # noqa: B018 - loading the settings sets PROMETHEUS_MULTIPROC_DIR

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

PREFIX = "convos_pool_"

# --- the tick (Celery) ------------------------------------------------------------------------------
TICK_DURATION = Histogram(
    f"{PREFIX}tick_duration_seconds", "Duration of a pool tick that ran (skipped ticks excluded).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
TICK_STEP_FAILURES = Counter(f"{PREFIX}tick_step_failures_total", "Tick steps that raised, by step.", ["step"])

# --- the claim (web) --------------------------------------------------------------------------------
_CLAIM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
CLAIMS = Counter(f"{PREFIX}claims_total", "Claims by outcome (claimed, replayed, or the error code).", ["outcome"])
CLAIM_POOL_SECONDS = Histogram(
    f"{PREFIX}claim_pool_seconds",
    "The pool's own part of a claim (reserving an idle instance, recording it), provisioning excluded, by outcome.",
    ["outcome"], buckets=_CLAIM_BUCKETS,
)
CLAIM_PROVISION_SECONDS = Histogram(
    f"{PREFIX}claim_provision_seconds",
    "Provisioning one reserved instance for a claim (services: tools, binding), by outcome (ok, failed).",
    ["outcome"], buckets=_CLAIM_BUCKETS,
)

# --- providers (services) ---------------------------------------------------------------------------
PROVIDER_CALLS = Counter(f"{PREFIX}provider_calls_total", "Calls (attempts) to a provider's API.", ["provider", "operation"])
PROVIDER_ERRORS = Counter(f"{PREFIX}provider_errors_total", "Provider call attempts that failed (retried or not).",
                          ["provider", "operation"])
# Set by each orphan sweep (services_app/services/orphans.py); "mostrecent": the last sweep's value
# stands, whichever process ran it and even after that process exits.
ORPHANS = Gauge(f"{PREFIX}orphans", "Resources named by the pool that no row records, older than the grace period, "
                "left after the last orphan sweep, by provider.", ["provider"], multiprocess_mode="mostrecent")
RAILWAY_RATE_LIMIT_WAIT_SECONDS = Histogram(
    f"{PREFIX}railway_rate_limit_wait_seconds",
    "Waits imposed by the client-side Railway limits (requests: the token bucket; project_create: the spacer).",
    ["limit"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# --- scrape-time collectors ------------------------------------------------------------------------
_scrape_collectors: dict[str, Callable[[], object]] = {}


def register_scrape_collector(name: str, factory: Callable[[], object]) -> None:
    """Have every scrape also collect from `factory()` (an object with `collect()` yielding metric
    families). Keyed by name, so registering twice (ready() runs again in tests) keeps one."""
    _scrape_collectors[name] = factory


def registry() -> CollectorRegistry:
    """A fresh registry holding every process's values plus the registered scrape collectors."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for factory in _scrape_collectors.values():
        registry.register(factory())
    return registry


def _authorized(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
