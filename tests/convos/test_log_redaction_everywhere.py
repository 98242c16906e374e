"""Secrets are redacted in the log of every process the pool runs: the Celery worker (whose
handlers replace ours), beat's logging setup, management commands and gunicorn's access log.

Each test starts the real process and reads what it wrote; a secret shaped like an OpenRouter key
(caught by pattern) and the configured POOL_API_KEY (caught by value) must never appear.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROBE_BROKER = "redis://127.0.0.1:6379/13"  # its own Redis database (CI uses 14, make test 15)


def _secrets() -> tuple[str, str]:
    return f"sk-or-v1-{secrets.token_hex(24)}", f"pool-key-{secrets.token_hex(20)}"


def _env(pool_key: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "POOL_API_KEY": pool_key, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", **extra}


def _assert_redacted(output: str, *leaked: str) -> None:
    assert output.strip(), "the process wrote nothing"
    for secret in leaked:
        assert secret not in output, f"{secret[:12]}… reached the log"
    assert "[redacted]" in output


def test_it_the_celery_worker_redacts_its_task_logs_and_tracebacks(monkeypatch):
    openrouter_key, pool_key = _secrets()
    queue = f"probe-{secrets.token_hex(4)}"
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "convos", "worker", "--pool=solo", "-Q", queue, "-I", "tests.convos.log_probe",
         "--loglevel=INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=_env(pool_key, CELERY_BROKER_URL=PROBE_BROKER), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    # Celery lets CELERY_BROKER_URL (set by .ci/run) win over the app's broker: point it here too.
    monkeypatch.setenv("CELERY_BROKER_URL", PROBE_BROKER)
    sender = Celery(broker=PROBE_BROKER)
    try:
        sender.send_task("tests.convos.log_probe.leak", args=[f"{openrouter_key} {pool_key}"], queue=queue)
        output = _read_until(worker, "raised unexpected", timeout=60)
    finally:
        worker.terminate()
        output_rest, _ = worker.communicate(timeout=30)
        with sender.connection_for_write() as connection:
            connection.default_channel.client.flushdb()
    output += (output_rest or b"").decode(errors="replace")
    assert "raised unexpected" in output and "Traceback" in output, output[-3000:]
    _assert_redacted(output, openrouter_key, pool_key)


def test_it_beat_s_logging_setup_redacts():
    openrouter_key, pool_key = _secrets()
    # What `celery beat` does before it runs: app.log.setup() (Beat.setup_logging), then logs.
    script = (
        "import logging\n"
        "from convos.celery import app\n"
        "app.log.setup(loglevel='INFO')\n"
        "log = logging.getLogger('celery.beat')\n"
        f"log.error('sending with Bearer %s', {pool_key!r})\n"
        "try:\n"
        f"    raise RuntimeError({openrouter_key!r})\n"
        "except RuntimeError:\n"
        "    log.exception('schedule failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(pool_key, DJANGO_SETTINGS_MODULE="convos.settings"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _assert_redacted(done.stdout + done.stderr, openrouter_key, pool_key)


def test_it_management_commands_redact():
    openrouter_key, pool_key = _secrets()
    script = (
        "import logging\n"
        "log = logging.getLogger('pool_app.management')\n"
        f"log.warning('key %s and %s', {openrouter_key!r}, {pool_key!r})\n"
        "try:\n"
        f"    raise ValueError('token ' + {openrouter_key!r})\n"
        "except ValueError:\n"
        "    log.exception('command failed')\n"
    )
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=_env(pool_key),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _assert_redacted(done.stdout + done.stderr, openrouter_key, pool_key)


def test_it_gunicorn_s_access_log_redacts_a_secret_in_the_query_string():
    openrouter_key, pool_key = _secrets()
    port = _free_port()
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "convos.wsgi", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--access-logfile", "-"],
        cwd=ROOT, env=_env(pool_key), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", params={"key": openrouter_key, "k2": pool_key}, timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        output = _read_until(web, "/healthz", timeout=20)
    finally:
        web.terminate()
        rest, _ = web.communicate(timeout=30)
    _assert_redacted(output + (rest or b"").decode(errors="replace"), openrouter_key, pool_key)


def _read_until(process: subprocess.Popen, marker: str, *, timeout: float) -> str:
    """Read the process's output line by line until `marker` appears (or it exits or time is up)."""
    os.set_blocking(process.stdout.fileno(), False)
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline and marker not in seen and process.poll() is None:
        chunk = process.stdout.read()
        if chunk:
            seen += chunk.decode(errors="replace")
        else:
            time.sleep(0.1)
    return seen


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
