"""The pool's Prometheus metrics: the scrape-time collector and the claim's timing.

The collector reads the pool database when /metrics is scraped (registered from PoolAppConfig.ready
via convos.metrics.register_scrape_collector): instances per status, the idle target, the max
total, whether the pool is paused, and the outage state of the last tick. No process counts these;
they are whatever the database says at scrape time, so every web worker answers the same.
The metric objects themselves live in convos.metrics.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prometheus_client.core import GaugeMetricFamily

from convos.errors import DomainError
from convos.metrics import CLAIM_POOL_SECONDS, CLAIM_PROVISION_SECONDS, CLAIMS, PREFIX

logger = logging.getLogger(__name__)


class PoolCollector:
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count

        from pool_app.config import pool_config
        from pool_app.db import DB
        from pool_app.models import Instance, InstanceStatus, PoolState

        up = GaugeMetricFamily(f"{PREFIX}database_up", "1 when the scrape could read the pool database.")
        try:
            counts = dict(Instance.objects.using(DB).order_by().values_list("status").annotate(n=Count("pk")))
            config = pool_config()
            state = PoolState.objects.using(DB).filter(pk=1).first()
        except Exception as exc:  # a scrape reports, never fails: the process metrics still go out
            logger.warning("metrics: reading the pool database failed: %s: %s", exc.__class__.__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        instances = GaugeMetricFamily(f"{PREFIX}instances", "Instances per status (deleted included).", labels=["status"])
        for status in InstanceStatus.values:
            instances.add_metric([status], counts.get(status, 0))
        yield instances
        yield GaugeMetricFamily(f"{PREFIX}idle_target", "Idle instances the tick keeps ready (POOL_MIN_IDLE or its override).",
                                value=config.min_idle)
        yield GaugeMetricFamily(f"{PREFIX}max_total", "Most instances the pool may hold (POOL_MAX_TOTAL or its override).",
                                value=config.max_total)
        yield GaugeMetricFamily(f"{PREFIX}paused", "1 while an operator has paused the pool.", value=int(bool(config.paused)))
        outage = bool(state and state.outage)
        yield GaugeMetricFamily(f"{PREFIX}outage", "1 while the last tick saw an outage and changed nothing.", value=int(outage))
        since = GaugeMetricFamily(f"{PREFIX}outage_since_timestamp_seconds", "When the current outage began (0: none).")
        since.add_metric([], state.outage_since.timestamp() if outage and state.outage_since else 0)
        yield since
        last_tick = GaugeMetricFamily(f"{PREFIX}last_tick_timestamp_seconds", "When the last tick finished (0: never).")
        last_tick.add_metric([], state.last_tick_at.timestamp() if state and state.last_tick_at else 0)
        yield last_tick


# --- the claim's timing -------------------------------------------------------------------------------
# Seconds spent provisioning in the claim being served (one claim may provision several instances).
_provision_s: ContextVar[list[float] | None] = ContextVar("claim_provision_s", default=None)


@contextmanager
def claim_timed() -> Iterator[dict[str, str]]:
    """Around a whole claim: counts it by outcome and splits its time into the pool's own part and
    provisioning. The caller sets `outcome["outcome"]` for a success other than "claimed"."""
    outcome = {"outcome": "claimed"}
    spent: list[float] = [0.0]
    token = _provision_s.set(spent)
    started = time.perf_counter()
    try:
        yield outcome
    except DomainError as exc:
        outcome["outcome"] = exc.code
        raise
    except Exception:
        outcome["outcome"] = "error"
        raise
    finally:
        _provision_s.reset(token)
        total = time.perf_counter() - started
        CLAIMS.labels(outcome["outcome"]).inc()
        CLAIM_POOL_SECONDS.labels(outcome["outcome"]).observe(max(0.0, total - spent[0]))


@contextmanager
def provisioning() -> Iterator[None]:
    """Around one provisioning of a reserved instance within a claim."""
    started = time.perf_counter()
    result = "failed"
    try:
        yield
        result = "ok"
    finally:
        elapsed = time.perf_counter() - started
        CLAIM_PROVISION_SECONDS.labels(result).observe(elapsed)
        spent = _provision_s.get()
        if spent is not None:
            spent[0] += elapsed
