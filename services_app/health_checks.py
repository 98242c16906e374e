"""Batched instance health checks on asyncio, with keep-alive connections reused across ticks.

One job: `check_batch(urls)` asks every base URL's `/pool/health` and returns one bool per URL.
Each process (and, after a fork, each child: gunicorn and celery prefork) lazily starts ONE
daemon thread running an event loop that owns one pool of keep-alive HTTP/1.1 connections; every
batch from every thread of that process runs on it, so one tick's connections serve the next.

The client is a minimal HTTP/1.1 GET on asyncio streams (Content-Length, chunked or close-
delimited bodies; http and https), not httpx: measured on 1,000 checks at concurrency 40, httpx's
AsyncClient took 5.7-7.7 s where plain asyncio streams took 1.1 s and the old threads 2 s.

Semantics (the same as the thread-pool version they replace): at most HEALTH_CHECK_CONCURRENCY
checks in flight per process, each bounded by HEALTH_CHECK_TIMEOUT_S from the moment it starts,
and the whole batch by HEALTH_CHECK_BATCH_DEADLINE_S. An instance that did not answer in time, or
answered anything but a ready health answer (`runtime_client.is_healthy_answer`), is unhealthy
this time: False, never an exception. Redirects are never followed (a redirect is not healthy).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import resource
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from services_app.runtime_client import is_healthy_answer

logger = logging.getLogger(__name__)
# Slack on top of the batch deadline for the calling thread's wait on the loop thread: the loop
# itself enforces the deadline; this only guards against a loop that is stuck.
_HANDOFF_SLACK_S = 2.0
_MAX_BODY = 64 * 1024  # a health answer is a few hundred bytes
_USER_AGENT = "convos-pool-health"


class _BadAnswer(Exception):
    """The instance answered something that is not HTTP/1.x as expected."""


@dataclass(frozen=True)
class _Key:
    pid: int
    concurrency: int
    keepalive_s: float


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _max_idle(concurrency: int) -> int:
    # One idle connection per instance is what reuse across ticks needs, but never more than half
    # of this process's file descriptors.
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(concurrency, (soft // 2) if soft > 0 else 512)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body and whether the connection can carry another request."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return body, True
            if len(body) + size > _MAX_BODY:
                raise _BadAnswer("body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > _MAX_BODY:
            raise _BadAnswer("body too large")
        return await reader.readexactly(length), True
    body = b""  # delimited by the server closing the connection
    while len(body) <= _MAX_BODY and (more := await reader.read(_MAX_BODY + 1 - len(body))):
        body += more
    if len(body) > _MAX_BODY:
        raise _BadAnswer("body too large")
    return body, False


class _Checker:
    """A daemon event-loop thread owning the idle connections and one concurrency semaphore."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.max_idle = _max_idle(key.concurrency)
        self.idle: dict[tuple[str, str, int], deque[_Conn]] = {}
        self.idle_count = 0
        self.ssl_context: ssl.SSLContext | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"health-checks-{key.pid}", daemon=True)
        self.thread.start()
        self.semaphore = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    async def _start(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self.key.concurrency)

    # --- connections (only ever touched on the loop thread) ---
    def _take(self, origin: tuple[str, str, int]) -> _Conn | None:
        conns = self.idle.get(origin)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            self.idle_count -= 1
            # Closed by the server meanwhile, or idle past the keep-alive: not worth a try.
            if conn.reader.at_eof() or conn.writer.is_closing() or now - conn.idle_since > self.key.keepalive_s:
                conn.close()
                continue
            return conn
        return None

    def _give_back(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        if self.idle_count >= self.max_idle:
            self._evict_oldest()
        conn.idle_since = time.monotonic()
        self.idle.setdefault(origin, deque()).append(conn)
        self.idle_count += 1

    def _evict_oldest(self) -> None:
        oldest = min((conns[0].idle_since, origin) for origin, conns in self.idle.items() if conns)[1]
        self.idle[oldest].popleft().close()
        self.idle_count -= 1
        if not self.idle[oldest]:
            del self.idle[oldest]

    async def _open(self, scheme: str, host: str, port: int) -> _Conn:
        if scheme == "https":
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            reader, writer = await asyncio.open_connection(host, port, ssl=self.ssl_context, server_hostname=host)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bytes, bool]:
        conn.writer.write(request)
        await conn.writer.drain()
        head = await conn.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        version, status = status_line.split(" ", 2)[:2]
        if not version.startswith("HTTP/1."):
            raise _BadAnswer(status_line)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body, reusable = await _read_body(conn.reader, headers)
        reusable = reusable and version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return int(status), body, reusable

    async def _get(self, base_url: str) -> tuple[int, bytes]:
        parts = urlsplit(f"{base_url}/pool/health")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _BadAnswer(f"not an http(s) URL: {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc.rsplit('@', 1)[-1]}\r\nAccept: application/json\r\n"
                   f"User-Agent: {_USER_AGENT}\r\n\r\n").encode("latin-1")
        conn = self._take(origin)
        if conn is not None:
            try:
                status, body, reusable = await self._exchange(conn, request)
            except (asyncio.IncompleteReadError, ConnectionError):
                conn.close()  # the server dropped the kept-alive connection: once more on a new one
                conn = None
            except BaseException:
                conn.close()
                raise
        if conn is None:
            conn = await self._open(*origin)
            try:
                status, body, reusable = await self._exchange(conn, request)
            except BaseException:
                conn.close()
                raise
        if reusable:
            self._give_back(origin, conn)
        else:
            conn.close()
        return status, body

    async def _check(self, url: str, timeout: float) -> bool:
        async with self.semaphore:
            # The per-check timeout starts once the check may run, as it did on a worker thread.
            try:
                async with asyncio.timeout(timeout):
                    status, body = await self._get(url)
                return is_healthy_answer(status, body)
            except Exception:  # noqa: BLE001 - timeout, refused, reset, bad URL: not healthy this time
                return False

    async def _batch(self, urls: Sequence[str], timeout: float, deadline_s: float) -> list[bool]:
        tasks = [asyncio.ensure_future(self._check(url, timeout)) for url in urls]
        done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for task in pending:  # not answered within the batch deadline: unknown, so False this time
            task.cancel()
        return [t in done and not t.cancelled() and t.exception() is None and t.result() is True for t in tasks]

    def run(self, urls: Sequence[str], timeout: float, deadline_s: float) -> list[bool]:
        future = asyncio.run_coroutine_threadsafe(self._batch(urls, timeout, deadline_s), self.loop)
        try:
            return future.result(timeout=deadline_s + _HANDOFF_SLACK_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.warning("health checks: the batch of %d did not come back from the event loop in time", len(urls))
            return [False] * len(urls)

    def close(self) -> None:
        """Close the idle connections and stop the loop (same process only: never after a fork)."""
        async def _close() -> None:
            for conns in self.idle.values():
                for conn in conns:
                    conn.close()
            self.idle.clear()
            self.idle_count = 0

        try:
            asyncio.run_coroutine_threadsafe(_close(), self.loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - best effort on the way out
            logger.debug("health checks: closing the connections failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)


_checker: _Checker | None = None
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A lock some parent thread held at the fork would stay locked forever in the child.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _current(concurrency: int, keepalive_s: float) -> _Checker:
    global _checker
    key = _Key(os.getpid(), concurrency, keepalive_s)
    with _lock:
        checker = _checker
        if checker is not None and checker.key == key:
            return checker
        if checker is not None and checker.key.pid == key.pid:
            checker.close()  # settings changed in this process: replace it
        # else: inherited through a fork: its loop thread does not exist here, and its sockets are
        # the parent's. Drop it without touching it (closing would talk to the parent's loop).
        _checker = _Checker(key)
        return _checker


def check_batch(urls: Sequence[str], *, timeout: float | None = None, deadline_s: float | None = None,
                concurrency: int | None = None) -> list[bool]:
    """True for each base URL whose `/pool/health` answered ready in time, False otherwise.

    Defaults: HEALTH_CHECK_TIMEOUT_S, HEALTH_CHECK_BATCH_DEADLINE_S, HEALTH_CHECK_CONCURRENCY.
    Returns within about `deadline_s` whatever the instances do.
    """
    from django.conf import settings

    urls = list(urls)
    if not urls:
        return []
    timeout = settings.HEALTH_CHECK_TIMEOUT_S if timeout is None else timeout
    deadline_s = settings.HEALTH_CHECK_BATCH_DEADLINE_S if deadline_s is None else deadline_s
    concurrency = max(1, settings.HEALTH_CHECK_CONCURRENCY if concurrency is None else concurrency)
    # Past the tick interval, so one tick's connections are still pooled for the next.
    keepalive_s = max(60.0, 2 * getattr(settings, "TICK_INTERVAL_MS", 30_000) / 1000.0)
    try:
        checker = _current(concurrency, keepalive_s)
    except Exception:  # noqa: BLE001 - no health answer is "unhealthy this time", never an error
        logger.exception("health checks: could not start the checker")
        return [False] * len(urls)
    return checker.run(urls, timeout, deadline_s)
