"""Claim load over HTTP: many clients claiming through gunicorn, on PostgreSQL and a fake fleet.

Starts, each as a process of its own (the shape of a deployment, on one machine):
- the fake fleet (`manage.py fake_fleet`, services_app/providers/fake.py) on a free port; every
  other process reaches it through FAKE_FLEET_URL;
- gunicorn, running the Procfile's `web` line as it stands (WEB_CONCURRENCY workers, default 2,
  WEB_THREADS threads, default 4) on a free port, INFRA_PROVIDER=fake;
- a top-up loop: one process running the `tick` command over and over (back to back while the
  pool is short, else every BENCH_TICK_PAUSE_MS, default 1000) with POOL_MIN_IDLE
  (BENCH_POOL_MIN_IDLE, default the larger run + 100) and POOL_CREATE_CONCURRENCY
  (BENCH_CREATE_CONCURRENCY, default 8). The pool is filled before each timed run and the loop is
  paused (SIGSTOP) while claims are timed: each tick health-checks the whole fleet, and on a
  2-CPU machine that takes the CPU the claims are measured on (in production the tick runs in a
  worker of its own).
The web processes claim as in production, the refill check included (POOL_REFILL_AFTER_CLAIM),
with their own POOL_MIN_IDLE (BENCH_WEB_MIN_IDLE, default 50): the prefilled pool never falls
below it, so no claim enqueues a tick (none would run: the loop is the refill).

Then `POST /api/pool/claim` with an API client's key: first BENCH_SEQUENTIAL_CLAIMS (default 300)
from one client, then BENCH_CLAIMS (default 10,000) from BENCH_CLIENTS (default 50) threads, each
with its own keep-alive requests.Session. Per request: client-side total time, the pool's own share
from `Server-Timing: pool;dur=...` (pool_app/apis.py: the request minus the instance's
provisioning call), status, instanceId. A 503 (pool empty) is counted and the client waits
BENCH_EMPTY_BACKOFF_MS (default 20) before its next request, as a real client would.

Databases: convos_bench_load_{default,pool,services,templates} at 127.0.0.1:5432, created if
missing, migrated and emptied. Prints a table, asserts nothing, leaves no process behind.
Usage: python -m bench.claim_load    (targets: pool p50 < 5 ms sequential, p99 < 25 ms at 50 clients)
"""
from __future__ import annotations

import io
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import cpu
from bench.databases import flush_all, use_postgres, vacuum_analyze
from services_app.providers import fake_fleet_process as fleet_process

REPO = Path(__file__).resolve().parent.parent
CLAIMS = int(os.environ.get("BENCH_CLAIMS", "10000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL_CLAIMS", "300"))
# Enough idle instances for the larger run: the claims are timed with the top-up loop paused.
MIN_IDLE = int(os.environ.get("BENCH_POOL_MIN_IDLE", str(max(CLAIMS, SEQUENTIAL) + 100)))
# Each creation thread holds a connection per alias: 8 keeps the whole run well under max_connections=100.
CREATE_CONCURRENCY = int(os.environ.get("BENCH_CREATE_CONCURRENCY", "8"))
# Pause of the top-up loop after a tick that found nothing to do.
TICK_PAUSE_S = float(os.environ.get("BENCH_TICK_PAUSE_MS", "1000")) / 1000
EMPTY_BACKOFF_S = float(os.environ.get("BENCH_EMPTY_BACKOFF_MS", "20")) / 1000
WEB_MIN_IDLE = os.environ.get("BENCH_WEB_MIN_IDLE", "50")
FILL_TIMEOUT_S = 600
SERVER_TIMING_POOL = re.compile(r"(?:^|,)\s*pool;dur=([0-9.]+)")
CLAIM_BODY = {"agentName": "Bench", "instructions": "Be quick."}


@dataclass(frozen=True)
class Sample:
    total_ms: float
    pool_ms: float | None
    status: int
    instance_id: str | None


# --- environment and processes -----------------------------------------------------------------
def _prepare_environment(var_dir: Path) -> None:
    """What every process of the run reads (they share VAR_DIR, hence its generated secrets)."""
    os.environ.update({
        "VAR_DIR": str(var_dir), "ENV_FILE": "/dev/null", "CONVOS_ENV": "development", "DJANGO_SETTINGS_MODULE": "convos.settings",
        "INFRA_PROVIDER": "fake", "LOG_LEVEL": "WARNING", "FAKE_HEALTH_LATENCY_MS": "0",
        "POOL_MIN_IDLE": str(MIN_IDLE), "POOL_MAX_TOTAL": "1000000", "POOL_CREATE_CONCURRENCY": str(CREATE_CONCURRENCY),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # gunicorn of this venv
    })
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "SERVICES_URL", "FAKE_FLEET_URL", "PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop(name, None)
    use_postgres("convos_bench_load")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Child processes, each in its own session so that stopping one stops its children too."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", open(self.log_dir / f"{name}.out", "w"))  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, cwd=REPO, stderr=open(self.log_dir / f"{name}.err", "w"),  # noqa: SIM115
                                   start_new_session=True, **kwargs)
        self.started.append((name, process))
        return process

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                os.killpg(process.pid, signal.SIGCONT)  # a paused top-up loop must run to see it
        for name, process in reversed(self.started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"  {name} did not stop on SIGTERM: killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # a grandchild that outlived its parent
            except ProcessLookupError:
                pass
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def check(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                err = (self.log_dir / f"{name}.err").read_text()[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode}: {err}")


def _start_fleet(processes: Processes) -> str:
    process = processes.start("fleet", fleet_process.fleet_command(), stdout=subprocess.PIPE, text=True)
    try:
        return fleet_process.fleet_url(process)
    except RuntimeError:
        processes.check()
        raise


def _procfile_web() -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError("Procfile has no web process")


def _start_web(processes: Processes) -> str:
    port = _free_port()
    # The Procfile's line itself, run by a shell as a platform would (its ${VAR:-default}s included).
    processes.start("web", ["bash", "-c", f"exec {_procfile_web()}"],
                    env={**os.environ, "PORT": str(port), "POOL_REFILL_AFTER_CLAIM": "true", "POOL_MIN_IDLE": WEB_MIN_IDLE})
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        processes.check()
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def top_up_loop() -> None:
    """The top-up process: the `tick` command again and again. The next tick follows at once while
    the pool is short (it created instances, or asks for an early recheck of starting ones), as the
    refill after a claim would; otherwise after TICK_PAUSE_S: every tick health-checks every live
    instance, claimed ones included, and back-to-back ticks over thousands of them would take the
    CPU the claims are measured on."""
    import json

    import django

    django.setup()
    from django.core.management import call_command

    while True:
        out = io.StringIO()
        call_command("tick", stdout=out, stderr=io.StringIO())
        try:
            report, _ = json.JSONDecoder().raw_decode(out.getvalue())
        except ValueError:
            report = {}
        top_up = (report.get("steps") or {}).get("top_up") or {}
        if not top_up.get("requested") and not report.get("recheckInMs"):
            time.sleep(TICK_PAUSE_S)


def _idle() -> int:
    from pool_app.models import Instance, InstanceStatus

    return Instance.objects.using("pool").filter(status=InstanceStatus.IDLE).count()


def _fill(processes: Processes, target: int) -> float:
    started = time.monotonic()
    while _idle() < target:
        processes.check()
        if time.monotonic() - started > FILL_TIMEOUT_S:
            raise RuntimeError(f"the pool did not reach {target} idle in {FILL_TIMEOUT_S} s (at {_idle()})")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    vacuum_analyze()
    return elapsed


# --- the load ----------------------------------------------------------------------------------
def _run(url: str, key: str, *, claims: int, clients: int) -> tuple[list[Sample], float]:
    import requests

    samples: list[Sample] = []
    lock = threading.Lock()
    remaining = [claims]
    start = threading.Barrier(clients + 1)

    def client() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        mine: list[Sample] = []
        start.wait()
        while True:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            began = time.perf_counter()
            try:
                response = session.post(f"{url}/api/pool/claim", json=CLAIM_BODY, timeout=120)
            except requests.RequestException:
                mine.append(Sample((time.perf_counter() - began) * 1000, None, 0, None))
                continue
            total_ms = (time.perf_counter() - began) * 1000
            timing = SERVER_TIMING_POOL.search(response.headers.get("Server-Timing", ""))
            instance_id = None
            if response.status_code == 200:
                instance_id = response.json().get("instanceId")
            mine.append(Sample(total_ms, float(timing.group(1)) if timing else None, response.status_code, instance_id))
            if response.status_code == 503:
                time.sleep(EMPTY_BACKOFF_S)
        session.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, name=f"claimer-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return samples, time.perf_counter() - began


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def _row(label: str, samples: list[Sample], wall_s: float) -> dict:
    ok = [s for s in samples if s.status == 200]
    pool = [s.pool_ms for s in ok if s.pool_ms is not None]
    statuses = Counter(s.status for s in samples)
    ids = Counter(s.instance_id for s in ok if s.instance_id)
    return {
        "label": label, "requests": len(samples), "ok": len(ok), "claims_s": len(ok) / wall_s if wall_s else 0.0,
        "total_p50": _pct([s.total_ms for s in ok], 50), "total_p99": _pct([s.total_ms for s in ok], 99),
        "pool_p50": _pct(pool, 50), "pool_p99": _pct(pool, 99), "pool_mean": statistics.fmean(pool) if pool else float("nan"),
        "twice": sum(1 for n in ids.values() if n > 1),
        "e5xx": sum(n for code, n in statuses.items() if code >= 500 and code != 503),
        "e503": statuses.get(503, 0),
        "other": sum(n for code, n in statuses.items() if code != 200 and code < 500),  # 0: the connection failed
        "statuses": dict(sorted(statuses.items())),
    }


def _busy_since(before: tuple[float, float]) -> float:
    busy, total = cpu.machine()
    return (busy - before[0]) / max(total - before[1], 1e-9)


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # so that `finally` stops every child process (SIGTERM would skip it)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    var_dir = Path(tempfile.mkdtemp(prefix="convos-bench-claim-load-"))
    _prepare_environment(var_dir)
    processes = Processes(var_dir)
    try:
        import django

        django.setup()
        from django.db import connections

        from pool_app.services.api_clients import api_client_create

        flush_all()
        key = api_client_create(name=f"bench-{secrets.token_hex(4)}", owner_id="bench").key

        fleet_url = _start_fleet(processes)
        os.environ["FAKE_FLEET_URL"] = fleet_url
        web_url = _start_web(processes)
        processes.start("top_up", [sys.executable, "-m", "bench.claim_load", "top-up-loop"])
        workers, threads = os.environ.get("WEB_CONCURRENCY", "2"), os.environ.get("WEB_THREADS", "4")
        print(f"claim load: gunicorn (Procfile web: {workers} workers x {threads} threads) at {web_url}, fake fleet at {fleet_url}, "
              f"PostgreSQL convos_bench_load_*, python {platform.python_version()}, {os.cpu_count()} CPUs")
        fill_s = _fill(processes, MIN_IDLE)
        print(f"  filled to {MIN_IDLE} idle in {fill_s:.1f} s (top-up loop: tick command, POOL_CREATE_CONCURRENCY={CREATE_CONCURRENCY})")

        top_up = next(p for name, p in processes.started if name == "top_up")
        roots = {"clients": os.getpid(), **{name: p.pid for name, p in processes.started}}
        rows = []
        os.killpg(top_up.pid, signal.SIGSTOP)
        before, machine_before = cpu.snapshot(), cpu.machine()
        samples, wall = _run(web_url, key, claims=SEQUENTIAL, clients=1)
        spent, busy = cpu.by_role(before, cpu.snapshot(), roots), _busy_since(machine_before)
        os.killpg(top_up.pid, signal.SIGCONT)
        rows.append(_row(f"sequential x{SEQUENTIAL}", samples, wall) | {"cpu": spent, "busy": busy})
        all_ids = [s.instance_id for s in samples if s.instance_id]
        refill_s = _fill(processes, MIN_IDLE)
        print(f"  refilled to {MIN_IDLE} idle in {refill_s:.1f} s")
        os.killpg(top_up.pid, signal.SIGSTOP)
        before, machine_before = cpu.snapshot(), cpu.machine()
        samples, wall = _run(web_url, key, claims=CLAIMS, clients=CLIENTS)
        spent, busy = cpu.by_role(before, cpu.snapshot(), roots), _busy_since(machine_before)
        os.killpg(top_up.pid, signal.SIGCONT)
        rows.append(_row(f"{CLIENTS} clients x{CLAIMS}", samples, wall) | {"cpu": spent, "busy": busy})
        all_ids += [s.instance_id for s in samples if s.instance_id]
        processes.check()
        connections.close_all()

        print(f"  {'run':<18} {'requests':>8} {'200':>6} {'claims/s':>8} {'total p50':>9} {'total p99':>9} "
              f"{'pool p50':>8} {'pool p99':>8} {'twice':>5} {'5xx':>4} {'503':>5} {'other':>5}")
        for r in rows:
            print(f"  {r['label']:<18} {r['requests']:>8} {r['ok']:>6} {r['claims_s']:>8.1f} {r['total_p50']:>9.1f} {r['total_p99']:>9.1f} "
                  f"{r['pool_p50']:>8.1f} {r['pool_p99']:>8.1f} {r['twice']:>5} {r['e5xx']:>4} {r['e503']:>5} {r['other']:>5}")
        print(f"  CPU ms per claim by process: {'run':<18} {'clients':>7} {'web':>6} {'fleet':>6} {'postgres':>8} {'other':>6}  machine busy")
        for r in rows:
            per = {role: seconds * 1000 / max(r["ok"], 1) for role, seconds in r["cpu"].items()}
            print(f"  {'':<28} {r['label']:<18} {per['clients']:>7.2f} {per['web']:>6.2f} {per['fleet']:>6.2f} "
                  f"{per['postgres']:>8.2f} {per['other']:>6.2f}  {r['busy']:>5.0%} of {os.cpu_count()} CPUs")
        twice_overall = sum(1 for n in Counter(all_ids).values() if n > 1)
        print("  statuses: " + "; ".join(f"{r['label']}: {r['statuses']}" for r in rows))
        print(f"  instanceIds handed out twice over both runs: {twice_overall} (must be 0)")
        print("  (ms; total: client-side request time of the 200s; pool: Server-Timing pool;dur, the request minus the\n"
              "   instance's provisioning call; claims/s: 200s per second of the run; 503: pool empty, client backs off\n"
              f"   {EMPTY_BACKOFF_S * 1000:.0f} ms; other: non-2xx below 500, 0 = connection failed. Targets: pool p50 < 5 ms\n"
              "   sequential, pool p99 < 25 ms at 50 clients)")
    finally:
        processes.stop_all()
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["top-up-loop"]:
        top_up_loop()
    else:
        sys.exit(main())
