"""Redis coming back after an outage (issue 11, item 3): nothing needs a restart.

A private redis-server on a free port (never the machine's shared one) is stopped and started
again under a real `celery worker` and `celery beat` (convos/celery.py, the settings'
CELERY_BROKER_CONNECTION_* retry settings). After the restart beat's schedule reaches the worker
again: beat reconnected to publish and the worker to consume, by themselves. The cache
(convos/cache.py) likewise answers misses while Redis is down and real values once it is back.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import caches

from tests.conftest import wait_until
from tests.faults import stop

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
REPO = Path(__file__).resolve().parents[2]
TASK = "pool_app.tasks.pool_tick_task"


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(answers, timeout=20, message="the private redis-server")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _celery(args: list[str], *, broker: str, var_dir: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "POOL_DATABASE_URL", "SERVICES_DATABASE_URL", "TEMPLATES_DATABASE_URL",
                        "PROMETHEUS_MULTIPROC_DIR")}
    # Scratch SQLite databases under a VAR_DIR of its own: the ticks these processes run (and fail:
    # no tables) never touch the test databases.
    env.update(CELERY_BROKER_URL=broker, REDIS_URL=broker, VAR_DIR=str(var_dir), ENV_FILE="/dev/null",
               CONVOS_ENV="development", TICK_INTERVAL_MS="2000", POOL_STARTING_RECHECK_MS="0", LOG_FORMAT="text")
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "convos", *args, "-l", "info"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_it_worker_and_beat_reconnect_after_redis_restarts(redis_server: PrivateRedis, tmp_path: Path):
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    worker = _celery(["worker", "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                     broker=redis_server.url, var_dir=tmp_path / "var-worker", log=worker_log)
    beat = _celery(["beat", "-s", str(tmp_path / "beat-schedule")], broker=redis_server.url,
                   var_dir=tmp_path / "var-beat", log=beat_log)
    try:
        wait_until(lambda: "ready." in worker_log.read_text(errors="replace"), timeout=90, interval=0.5, message="the worker")
        wait_until(lambda: TASK in worker_log.read_text(errors="replace"), timeout=60, interval=0.5, message="a first tick")

        redis_server.stop()
        wait_until(lambda: "Connection to broker lost" in worker_log.read_text(errors="replace")
                   or "Cannot connect to redis" in worker_log.read_text(errors="replace"),
                   timeout=60, interval=0.5, message="the worker to notice the outage")
        time.sleep(3)  # a few of beat's sends fail meanwhile
        redis_server.start()
        restarted_at = len(worker_log.read_bytes())

        after = lambda: worker_log.read_bytes()[restarted_at:].decode(errors="replace")  # noqa: E731
        # Beat's ticks run on the worker again: beat reconnected to publish them, the worker to take
        # them. (The restarted Redis keeps nothing: every message here was published after it.)
        wait_until(lambda: len(set(re.findall(rf"{TASK}\[([0-9a-f-]+)\] (?:succeeded|raised)", after()))) >= 2,
                   timeout=90, interval=0.5, message="two ticks sent by beat after the restart to run on the worker")
        assert worker.poll() is None and beat.poll() is None, "a process gave up instead of reconnecting"
    finally:
        stop(beat, timeout=20)
        stop(worker, timeout=20)


def test_it_the_cache_answers_misses_while_redis_is_down_and_values_once_it_is_back(redis_server: PrivateRedis, settings):
    settings.CACHES = {"default": {"BACKEND": "convos.cache.FailSoftRedisCache", "LOCATION": redis_server.url,
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    cache = caches["default"]
    cache.set("k", "before")
    assert cache.get("k") == "before"

    redis_server.stop()
    assert cache.get("k", "missed") == "missed"
    cache.set("k", "dropped")  # no error

    redis_server.start()  # a new server: nothing of before survived (--save "")
    cache.set("k", "after")
    assert cache.get("k") == "after"
