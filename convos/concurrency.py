"""Run blocking calls on a bounded thread pool without leaking database connections."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from django.db import connections

T = TypeVar("T")
R = TypeVar("R")


def _closing(fn: Callable[[T], R]) -> Callable[[T], R]:
    """`fn`, closing the connections its thread opened: Django opens one per thread and alias, and a
    pool thread that never closes them would hold PostgreSQL connections forever."""

    def run(item: T) -> R:
        try:
            return fn(item)
        finally:
            connections.close_all()

    return run


def map_concurrently(fn: Callable[[T], R], items: Iterable[T], *, max_workers: int) -> list[R]:
    """`[fn(item) for item in items]` on up to `max_workers` threads, results in input order."""
    items = list(items)
    if not items:
        return []
    if max_workers <= 1 or len(items) == 1:
        return [fn(item) for item in items]  # the caller's thread: its connections stay its own
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as executor:
        return list(executor.map(_closing(fn), items))


def map_with_deadline(fn: Callable[[T], R], items: Iterable[T], *, max_workers: int, deadline_s: float, missing: R) -> list[R]:
    """Like `map_concurrently`, but whatever has not finished after `deadline_s` (or failed) counts
    as `missing`: one batch of slow calls (e.g. health checks of hanging instances) cannot stall the
    caller for items / workers x timeout. Calls still queued are cancelled; running ones end on
    their own timeouts in the background."""
    items = list(items)
    if not items:
        return []
    executor = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items))))
    futures = [executor.submit(_closing(fn), item) for item in items]
    wait(futures, timeout=deadline_s)
    executor.shutdown(wait=False, cancel_futures=True)
    return [f.result() if f.done() and not f.cancelled() and f.exception() is None else missing for f in futures]
