"""Benchmark the pool tick at 100, 1,000 and 5,000 instances (BENCH_TICK_SIZES), on the fake infra provider.

Local runtime processes are too heavy for 1,000 instances, so the instances here are fake ones
(services_app/providers/fake.py): no process each, all served by ONE fake fleet process
(`manage.py fake_fleet`, FAKE_FLEET_URL), so the tick still runs its real code path, health checks
over HTTP included, and the CPU measured is the pool's own: serving 5,000 health checks is the
fleet's work, as it is the instances' in production. BENCH_FLEET=in-process serves them from the
bench's own process instead (the numbers then include the server's CPU). For each size N:

1. Fill: POOL_MIN_IDLE=N and `pool_tick()` until N instances are idle (the real top-up path).
2. Steady state: 5 more ticks with nothing to change (all idle and healthy); wall time of each,
   the time spent inside services' status batch, and the SQL statements the tick's own thread
   ran, and this process's CPU time. Then the same with FAKE_HEALTH_LATENCY_MS=50 (a simulated
   network round trip per health check, set in the fleet through its /fleet/knobs).

Runs on fresh SQLite files in a temporary VAR_DIR by default; with BENCH_DATABASE=postgres on the
PostgreSQL databases convos_bench_{default,pool,services,templates} at 127.0.0.1:5432 (created if
missing, emptied first). Prints numbers and asserts nothing. Usage: python -m bench.tick
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from bench.databases import ALIASES, flush_all, isolated_environment, use_embedded_sqlite, use_postgres, vacuum_analyze

# Sizes to run, e.g. BENCH_TICK_SIZES=100,1000 (default 100,1000,5000).
SIZES = tuple(int(n) for n in os.environ.get("BENCH_TICK_SIZES", "100,1000,5000").split(",") if n.strip())
STEADY_TICKS = 5
LATENCIES_MS = (0, 50)


def _prepare_environment() -> Path:
    """Everything Django reads at start-up; must run before django.setup()."""
    var_dir = isolated_environment(var_prefix="convos-bench-tick-", provider="fake")
    if os.environ.get("BENCH_DATABASE") == "postgres":
        use_postgres("convos_bench")
    else:
        use_embedded_sqlite()  # under the fresh VAR_DIR
    return var_dir


class Probe:
    """Counts and times services.status_batch calls and the SQL the calling thread runs."""

    def __init__(self) -> None:
        self.batch_calls = 0
        self.batch_ms = 0.0
        self.queries = 0
        self.cpu_ms = 0.0  # CPU of this whole process (every thread) during the tick

    def status_batch(self, original):
        def wrapped(instance_ids):
            self.batch_calls += 1
            started = time.perf_counter()
            try:
                return original(instance_ids)
            finally:
                self.batch_ms += (time.perf_counter() - started) * 1000

        return wrapped

    def sql(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)


def _measured_tick():
    """One pool_tick() with its status_batch calls and main-thread SQL counted."""
    from django.db import connections

    from pool_app.services import pool_tick
    from services_app import facade

    probe = Probe()
    original = facade.status_batch
    facade.status_batch = probe.status_batch(original)
    try:
        with ExitStack() as stack:
            for alias in ALIASES:
                stack.enter_context(connections[alias].execute_wrapper(probe.sql))
            started, cpu_started = time.perf_counter(), time.process_time()
            report = pool_tick()
            wall_ms = (time.perf_counter() - started) * 1000
            probe.cpu_ms = (time.process_time() - cpu_started) * 1000
    finally:
        facade.status_batch = original
    return wall_ms, report, probe


def _count(status: str) -> int:
    from pool_app.models import Instance

    return Instance.objects.using("pool").filter(status=status).count()


def _fill(n: int) -> tuple[float, list[float]]:
    from django.conf import settings

    from pool_app.models import InstanceStatus
    from pool_app.services import pool_tick

    settings.POOL_MIN_IDLE = n
    settings.POOL_MAX_TOTAL = 100_000
    settings.POOL_CREATE_CONCURRENCY = 16
    settings.FAKE_HEALTH_LATENCY_MS = 0
    started, ticks = time.perf_counter(), []
    while _count(InstanceStatus.IDLE) < n:
        report = pool_tick()
        ticks.append(report["durationMs"])
        if report.get("errors") or report.get("outage") or len(ticks) > 20:
            raise RuntimeError(f"filling to {n} idle failed after {len(ticks)} ticks: {report}")
    elapsed = time.perf_counter() - started
    vacuum_analyze()  # the steady state is measured with the statistics autovacuum would have taken
    return elapsed, ticks


def _steps(report: dict) -> str:
    """Every step's report fields, compactly: `observe checked=1000 transitions=0; top_up ...`."""
    parts = []
    for name, fields in report.get("steps", {}).items():
        values = " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else str(fields)
        parts.append(f"{name} {values}".strip())
    for key in ("errors", "outage", "skipped"):
        if report.get(key):
            parts.append(f"{key}={report[key]!r}")
    return "; ".join(parts)


def _teardown() -> None:
    from django.db import connections

    from pool_app.models import Instance, InstanceStatus
    from pool_app.services import instance_destroy
    from services_app import services
    from services_app.models import InstanceInfra

    for pk in Instance.objects.using("pool").exclude(status=InstanceStatus.DELETED).values_list("pk", flat=True):
        instance_destroy(instance_id=pk, actor="cli", reason="bench teardown")
    for infra_id in InstanceInfra.objects.using("services").values_list("instance_id", flat=True):
        services.instance_destroy(instance_id=infra_id)  # anything the pool did not know of
    connections.close_all()


def _set_latency(fleet_url: str, latency_ms: float) -> None:
    """The fleet's simulated network latency per health check (in the fleet's process, or here)."""
    from django.conf import settings

    settings.FAKE_HEALTH_LATENCY_MS = latency_ms
    if fleet_url:
        import requests

        requests.post(f"{fleet_url}/fleet/knobs", json={"FAKE_HEALTH_LATENCY_MS": latency_ms}, timeout=10).raise_for_status()


def main() -> None:
    var_dir = _prepare_environment()
    fleet = None
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.db import connections

        flush_all()
        fleet_url = ""
        if os.environ.get("BENCH_FLEET", "process") == "process":
            from services_app.providers import fake_fleet_process

            fleet, fleet_url = fake_fleet_process.spawn()
            settings.FAKE_FLEET_URL = fleet_url
        vendor = connections["pool"].vendor
        print(f"tick benchmark: fake provider ({'fleet process' if fleet_url else 'in-process server'}), {vendor} ({'convos_bench_*' if vendor == 'postgresql' else 'fresh files'}), "
              f"HEALTH_CHECK_CONCURRENCY={settings.HEALTH_CHECK_CONCURRENCY}, HEALTH_CHECK_TIMEOUT_S={settings.HEALTH_CHECK_TIMEOUT_S:g}, "
              f"python {platform.python_version()}, {os.cpu_count()} CPUs")
        rows = []
        try:
            for n in SIZES:
                fill_s, fill_ticks = _fill(n)
                print(f"  fill to {n} idle: {fill_s:.1f} s in {len(fill_ticks)} ticks of "
                      f"{' + '.join(f'{d:.0f}' for d in fill_ticks)} ms (create, then observe starting -> idle; POOL_CREATE_CONCURRENCY=16)")
                for latency in LATENCIES_MS:
                    _set_latency(fleet_url, latency)
                    samples = [_measured_tick() for _ in range(STEADY_TICKS)]
                    walls = [s[0] for s in samples]
                    rows.append({
                        "n": n, "latency": latency,
                        "median": statistics.median(walls), "worst": max(walls),
                        "reported": statistics.median(s[1]["durationMs"] for s in samples),
                        "batch_calls": sorted({s[2].batch_calls for s in samples}),
                        "batch_ms": statistics.median(s[2].batch_ms for s in samples),
                        "rest_ms": statistics.median(s[0] - s[2].batch_ms for s in samples),
                        "queries": statistics.median(s[2].queries for s in samples),
                        "cpu_ms": statistics.median(s[2].cpu_ms for s in samples),
                        "steps": _steps(samples[-1][1]),
                    })
        finally:
            _set_latency(fleet_url, 0)
            _teardown()

        print(f"steady-state pool_tick(), {STEADY_TICKS} ticks each, nothing to change (all idle and healthy):")
        header = (f"  {'N':>5} {'health lat':>10} {'median ms':>10} {'worst ms':>9} {'CPU ms':>8} {'CPU us/inst':>11} {'batch calls':>11} "
                  f"{'in batch ms':>11} {'rest ms':>8} {'SQL/tick':>8}")
        print(header)
        for r in rows:
            calls = ",".join(str(c) for c in r["batch_calls"])
            print(f"  {r['n']:>5} {str(r['latency']) + ' ms':>10} {r['median']:>10.1f} {r['worst']:>9.1f} {r['cpu_ms']:>8.0f} "
                  f"{r['cpu_ms'] * 1000 / r['n']:>11.0f} {calls:>11} {r['batch_ms']:>11.1f} {r['rest_ms']:>8.1f} {r['queries']:>8.0f}")
        print("  last report of each row:")
        for r in rows:
            print(f"  {r['n']:>5} {str(r['latency']) + ' ms':>10}  {r['steps']}")
        print("  (CPU ms: this process's CPU time during the tick, every thread; in batch ms: inside services.status_batch, health checks included;\n"
              "   rest ms: tick minus in-batch (median); SQL/tick: statements on the tick's own thread, health-check threads excluded)")
    finally:
        if fleet is not None:
            from services_app.providers import fake_fleet_process

            fake_fleet_process.stop(fleet)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
