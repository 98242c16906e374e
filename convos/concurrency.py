"""Run blocking calls on a bounded thread pool without leaking database connections."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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
