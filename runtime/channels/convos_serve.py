"""Keeping one `convos agent serve` alive for the bound conversation.

One job: run the CLI's long-lived process, hand each ndjson event it prints to a callback,
write commands to its stdin, and restart it with back-off when it dies (2 s × attempt, at most
5 attempts in a row; a run that stayed up a minute starts the count again). After the last
attempt the supervisor gives up and says so (`failed`), so /pool/health turns 503 instead of
the instance pretending to listen.
"""
from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.channels.base import ChannelError
from runtime.channels.convos_cli import ConvosCLI

logger = logging.getLogger(__name__)

RESTART_DELAY_S = 2.0
MAX_ATTEMPTS = 5
HEALTHY_AFTER_S = 60.0
HEARTBEAT_S = 30
_STOP_GRACE_S = 5.0

# The CLI keeps running when one of its streams ends, and says so on stdout: restart it then.
_STREAM_ENDED = ("Message stream ended", "DM stream ended")


@dataclass(frozen=True)
class RestartPolicy:
    restart_delay: float = RESTART_DELAY_S  # seconds, times the attempt number
    max_attempts: int = MAX_ATTEMPTS
    healthy_after: float = HEALTHY_AFTER_S  # a run this long starts the count again
    heartbeat: int = HEARTBEAT_S  # the CLI's --heartbeat


class ServeSupervisor:
    def __init__(self, cli: ConvosCLI, conversation_id: str, on_event: Callable[[dict[str, Any]], None],
                 policy: RestartPolicy = RestartPolicy(), monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cli = cli
        self.conversation_id = conversation_id
        self._on_event = on_event
        self.policy = policy
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._proc_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.starts = 0
        self.failed = False

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"convos-serve-{self.conversation_id[:8]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the CLI to stop (`stop`, then end of stdin), then signal it if it lingers."""
        self._stopping.set()
        with self._proc_lock:
            proc = self._proc
        if proc is not None:
            _shut_down(proc)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=_STOP_GRACE_S * 3)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait for a (re)starting serve, but not for one that was given up or stopped."""
        deadline = self._monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.failed or self._stopping.is_set() or self._monotonic() >= deadline:
                return False
        return True

    # -- commands -------------------------------------------------------------

    def command(self, payload: dict[str, Any]) -> None:
        """Write one command line to the running serve's stdin."""
        with self._proc_lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or not self._ready.is_set():
                raise ChannelError("the conversation's `agent serve` is not running")
            try:
                proc.stdin.write(json.dumps(payload, ensure_ascii=False) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise ChannelError(f"could not write to `agent serve`: {exc}") from None

    # -- the loop -------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            started = self._monotonic()
            returncode = self._serve_once()
            if self._stopping.is_set():
                break
            if self._monotonic() - started >= self.policy.healthy_after:
                attempt = 0
            attempt += 1
            if attempt > self.policy.max_attempts:
                self.failed = True
                logger.error("`convos agent serve` keeps exiting (last exit %s); gave up after %d restarts",
                             returncode, self.policy.max_attempts)
                return
            delay = self.policy.restart_delay * attempt
            logger.warning("`convos agent serve` exited with %s; restarting in %.0fs (attempt %d of %d)",
                           returncode, delay, attempt, self.policy.max_attempts)
            self._stopping.wait(delay)

    def _serve_once(self) -> int | None:
        try:
            proc = self.cli.spawn_serve(self.conversation_id, heartbeat=self.policy.heartbeat)
        except OSError as exc:
            logger.error("cannot start `convos agent serve`: %s", exc)
            return None
        with self._proc_lock:
            self._proc = proc
        self.starts += 1
        if self._stopping.is_set():  # stop() ran while this one was being started
            _shut_down(proc)
        threading.Thread(target=_drain_stderr, args=(proc,), name="convos-serve-stderr", daemon=True).start()
        try:
            for line in proc.stdout:
                event = _parse_event(line)
                if event is None:
                    continue
                kind = event.get("event")
                if kind == "ready":
                    self._ready.set()
                elif kind == "error" and str(event.get("message", "")).startswith(_STREAM_ENDED):
                    logger.warning("`agent serve` lost a stream (%s); restarting it", event.get("message"))
                    _shut_down(proc)
                self._deliver(event)
        finally:
            self._ready.clear()
            returncode = proc.wait()
            with self._proc_lock:
                self._proc = None
        return returncode

    def _deliver(self, event: dict[str, Any]) -> None:
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the conversation
            logger.exception("handling a %s event failed", event.get("event"))


def _parse_event(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        logger.warning("`agent serve` printed a line that is not JSON (ignored)")
        return None
    return event if isinstance(event, dict) else None


def _drain_stderr(proc: subprocess.Popen[str]) -> None:
    # The CLI's diagnostics (invite URL, warnings, errors); kept short in the runtime's log.
    for line in proc.stderr:
        line = line.strip()
        if line:
            logger.info("convos: %s", line[:300])


def _shut_down(proc: subprocess.Popen[str]) -> None:
    """`stop`, then end of stdin (either ends the CLI), then SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        proc.stdin.write('{"type":"stop"}\n')
        proc.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    try:
        proc.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass
    try:
        proc.wait(timeout=_STOP_GRACE_S)
        return
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        proc.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
