"""Benchmark the real local stack (scripts/run.sh: gunicorn, celery worker and beat, runtimes).

1. Start-up: a fresh VAR_DIR, default settings; time from launching the pool until
   GET /api/pool/status shows POOL_MIN_IDLE (3) idle instances.
2. Claims: a second fresh pool kept at 20 idle; 20 sequential POST /api/pool/claim over HTTP,
   then, refilled, 20 more with ?qr=true (the answer's QR code drawn).
   Each answer's Server-Timing header splits the claim into the instance's provision call and
   the pool's own work; the client-side total includes HTTP.

Prints numbers and asserts nothing. Usage: python -m bench.startup_and_claims
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_key(var_dir: Path) -> str:
    for _ in range(200):
        path = var_dir / "local-secrets.env"
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("POOL_API_KEY="):
                    return line.split("=", 1)[1]
        time.sleep(0.05)
    raise RuntimeError("no local secrets were written")


class Pool:
    def __init__(self, **env: str) -> None:
        self.var_dir = Path(tempfile.mkdtemp(prefix="convos-bench-"))
        self.port = _free_port()
        self.env = {
            **os.environ,
            "VAR_DIR": str(self.var_dir),
            "ENV_FILE": "/dev/null",
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            **env,
        }
        for name in ("DATABASE_URL", "POOL_DATABASE_URL", "SERVICES_DATABASE_URL", "TEMPLATES_DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
            self.env.pop(name, None)  # the embedded defaults, as `make run` uses them
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.key = _read_key(self.var_dir)
        return self.started

    def status(self) -> dict:
        try:
            return requests.get(f"{self.base}/api/pool/status", headers={"Authorization": f"Bearer {self.key}"}, timeout=5).json()
        except (requests.RequestException, ValueError):
            return {}

    def wait_idle(self, n: int, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().get("counts", {}).get("idle", 0) >= n:
                return time.monotonic() - self.started
            time.sleep(0.25)
        raise RuntimeError(f"{n} idle instances did not appear within {timeout}s")

    def stop(self) -> None:
        subprocess.run(["bash", "scripts/stop.sh"], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        # Destroyed, not just stopped: the benchmark leaves nothing behind.
        subprocess.run([sys.executable, "-c", "import shutil,sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", str(self.var_dir)], check=False)


def _timing(header: str) -> dict[str, float]:
    parts = {}
    for item in header.split(","):
        name, _, dur = item.strip().partition(";dur=")
        parts[name] = float(dur)
    return parts


def _summary(label: str, values: list[float]) -> str:
    return f"{label:<22} median {statistics.median(values):7.1f} ms   worst {max(values):7.1f} ms"


def main() -> None:
    startup = Pool()
    try:
        startup.start()
        elapsed = startup.wait_idle(3)
        print(f"start-up: 3 idle instances {elapsed:.1f} s after launch (TICK_INTERVAL_MS default 30000)")
    finally:
        startup.stop()

    fast = Pool(TICK_INTERVAL_MS="5000")
    try:
        fast.start()
        print(f"start-up: 3 idle instances {fast.wait_idle(3):.1f} s after launch with TICK_INTERVAL_MS=5000")
    finally:
        fast.stop()

    pool = Pool(POOL_MIN_IDLE="20", TICK_INTERVAL_MS="2000")
    try:
        pool.start()
        # Without the QR code (the default answer), then asking for it with ?qr=true.
        for query, label in (("", "no QR, the default"), ("?qr=true", "?qr=true")):
            pool.wait_idle(20)
            _claims(pool, query, label)
    finally:
        pool.stop()


def _claims(pool: Pool, query: str, label: str) -> None:
    totals, provisions, overheads = [], [], []
    for i in range(20):
        t0 = time.perf_counter()
        response = requests.post(
            f"{pool.base}/api/pool/claim{query}",
            json={"agentName": f"bench-{i}", "instructions": "Benchmark agent."},
            headers={"Authorization": f"Bearer {pool.key}"},
            timeout=90,
        )
        totals.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        timing = _timing(response.headers["Server-Timing"])
        provisions.append(timing["provision"])
        overheads.append(timing["pool"])
    print(f"claims (20, sequential, over HTTP to gunicorn, SQLite; {label}):")
    print("  " + _summary("client total", totals))
    print("  " + _summary("instance provision", provisions))
    print("  " + _summary("pool overhead", overheads))
    print("  " + _summary("HTTP + server stack", [t - p - o for t, p, o in zip(totals, provisions, overheads)]))

if __name__ == "__main__":
    main()
