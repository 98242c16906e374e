"""Celery tasks: thin wrappers that call exactly one service."""
from __future__ import annotations

from celery import shared_task

from pool_app.services import pool_tick


@shared_task(name="pool_app.tasks.pool_tick_task", ignore_result=True)
def pool_tick_task() -> dict:
    return pool_tick()
