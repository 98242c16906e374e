"""Bounded concurrency helpers."""
from __future__ import annotations

import time

from convos.concurrency import map_concurrently, map_with_deadline


def test_it_keeps_input_order():
    assert map_concurrently(lambda x: x * 2, [3, 1, 2], max_workers=3) == [6, 2, 4]


def test_it_a_deadline_counts_slow_calls_as_missing_without_waiting_for_them():
    def call(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    started = time.monotonic()
    results = map_with_deadline(call, [0, 0, 2.0, 0], max_workers=4, deadline_s=0.3, missing="missing")
    assert results == ["done", "done", "missing", "done"]
    assert time.monotonic() - started < 1.5  # did not wait for the 2 s call


def test_it_a_failing_call_counts_as_missing():
    def call(x: int) -> int:
        if x == 2:
            raise RuntimeError("boom")
        return x

    assert map_with_deadline(call, [1, 2, 3], max_workers=2, deadline_s=5, missing=-1) == [1, -1, 3]
