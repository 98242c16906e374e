"""Real processes to kill (issue 11, item 2): the fake fleet, a gunicorn web tier, a management
command, each on this test run's databases. The TCP proxy that cuts PostgreSQL is the one of
tests/convos/test_database_down.py (re-exported here)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from django.db import connections

from services_app.providers import fake_fleet_process as fleet_process
from tests.convos.test_database_down import CuttableProxy  # noqa: F401 - shared with the fault tests

ROOT = Path(__file__).resolve().parents[1]
_URL_VARIABLES = {"default": "DATABASE_URL", "pool": "POOL_DATABASE_URL", "services": "SERVICES_DATABASE_URL",
                  "templates": "TEMPLATES_DATABASE_URL"}


def database_env(*, port: int | None = None) -> dict[str, str]:
    """Point a child process at this test run's (PostgreSQL) databases; through `port` (a proxy) if given."""
    env = {}
    for alias, variable in _URL_VARIABLES.items():
        s = connections[alias].settings_dict
        host, real_port = (s["HOST"] or "127.0.0.1"), (s["PORT"] or 5432)
        env[variable] = f"postgres://{s['USER']}@{'127.0.0.1' if port else host}:{port or real_port}/{s['NAME']}"
    return env


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **database_env(), "LOG_LEVEL": "WARNING", "DB_CONNECT_TIMEOUT_S": "2", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen, *, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it lingers; a process started in a session of its own
    (start_new_session=True) is stopped with its whole process group."""
    if process.poll() is not None:
        return
    try:
        group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return

    def send(sig: int) -> None:
        try:
            os.killpg(process.pid, sig) if group else process.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(5)


@contextmanager
def fake_fleet(**knobs: str) -> Iterator[str]:
    """`manage.py fake_fleet --port 0` with the given settings (FAKE_*_DELAY_MS); yields its URL."""
    process, url = fleet_process.spawn(env=child_env(**knobs))
    try:
        yield url
    finally:
        fleet_process.stop(process)


def fleet_ids(url: str) -> set[str]:
    return set(requests.get(f"{url}/fleet/instances", timeout=5).json()["instanceIds"])


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen]]:
    """The Procfile's web line on a free port; yields (base URL, master process) once /healthz answers."""
    port = free_port()
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "convos.wsgi", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", "4", "--timeout", "120"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz", timeout=30)
        yield base, master
    finally:
        stop(master)


def wait_for_http(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (gunicorn's workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found
