"""Run blocking calls on a bounded thread pool without leaking database connections."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from django.db import connections

T = TypeVar("T")
R = TypeVar("R")


def map_concurrently(fn: Callable[[T], R], items: Iterable[T], *, max_workers: int) -> list[R]:
    """`[fn(item) for item in items]` on up to `max_workers` threads, results in input order.

    Each call closes the connections its thread opened: Django opens one per thread and alias,
    and a pool thread that never closes them would hold PostgreSQL connections forever.
    """
    items = list(items)
    if not items:
        return []

    def run(item: T) -> R:
        try:
            return fn(item)
        finally:
            connections.close_all()

    if max_workers <= 1 or len(items) == 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as executor:
        return list(executor.map(run, items))


def map_with_deadline(fn: Callable[[T], R], items: Iterable[T], *, max_workers: int, deadline_s: float, missing: R) -> list[R]:
    """Like `map_concurrently`, but whatever has not finished after `deadline_s` counts as
    `missing`: one batch of slow calls (e.g. health checks of hanging instances) cannot stall the
    caller for items / workers x timeout. Calls still queued are cancelled; running ones end on
    their own timeouts in the background."""
    items = list(items)
    if not items:
        return []

    def run(item: T) -> R:
        try:
            return fn(item)
        finally:
            connections.close_all()

    executor = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items))))
    futures = [executor.submit(run, item) for item in items]
    wait(futures, timeout=deadline_s)
    executor.shutdown(wait=False, cancel_futures=True)
    return [f.result() if f.done() and not f.cancelled() and f.exception() is None else missing for f in futures]
