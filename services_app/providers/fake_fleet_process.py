"""Start the fake fleet (`manage.py fake_fleet`) as a child process, FOR BENCHMARKS AND TESTS ONLY.

One way to start it and learn its URL, shared by the tests that kill processes around it and by
the benches that measure the pool against it (services_app/providers/fake.py serves it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BANNER = "Fake fleet serving on "


def fleet_command() -> list[str]:
    """The command line: the system picks a free port, printed on the first line."""
    return [sys.executable, "manage.py", "fake_fleet", "--port", "0"]


def fleet_url(process: subprocess.Popen) -> str:
    """The URL the fleet printed on its first line (its stdout must be a text pipe)."""
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith(BANNER):
        raise RuntimeError(f"fake_fleet did not start (exit {process.poll()}): it said {line!r}")
    return line[len(BANNER):].strip()


def spawn(*, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start a fleet in a session of its own; returns the process and its URL."""
    process = subprocess.Popen(fleet_command(), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=True)
    try:
        return process, fleet_url(process)
    except Exception:
        stop(process)
        raise


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the fleet's session, SIGKILL if it lingers; close its pipe."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    if process.stdout:
        process.stdout.close()
