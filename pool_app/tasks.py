"""Celery tasks: thin wrappers that call exactly one service."""
from __future__ import annotations

from celery import shared_task

from pool_app.services import pool_tick


@shared_task(name="pool_app.tasks.pool_tick_task", ignore_result=True)
def pool_tick_task() -> dict:
    report = pool_tick()
    if report.get("recheckInMs"):
        # Instances are starting while the pool is short: look again soon, not a whole interval later.
        seconds = report["recheckInMs"] / 1000
        pool_tick_task.apply_async(countdown=seconds, expires=seconds + 30)
    return report
