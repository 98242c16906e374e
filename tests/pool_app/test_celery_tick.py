"""The tick runs through the real queue: a message sent to Redis is consumed by a Celery worker.

Celery's embedded test worker (`celery.contrib.testing.worker.start_worker`) runs in a thread of
this process. It is used as a plain context manager, not through Celery's pytest plugin (which is
not installed here), so it does not compete with pytest-django: the worker's test is a
`transaction=True` test, hence the rows the worker thread writes on its own database connections
are committed and visible here, and pytest-django flushes them afterwards. Celery's Django fix-up
closes the worker thread's connections after the task.

Starting the worker reconfigures logging (it empties the root logger's handlers and sets a few
environment variables); `_logging_restored` puts all of that back so later tests are unaffected.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery.app.log import Logging
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings

from convos.celery import app as celery_app
from pool_app.models import Instance, InstanceStatus
from pool_app.services import instance_destroy
from pool_app.tasks import pool_tick_task
from services_app.providers.local import list_runtime_processes
from tests.conftest import ALL_DATABASES, wait_until

pytestmark = [
    pytest.mark.redis,
    pytest.mark.e2e,
    pytest.mark.django_db(databases=ALL_DATABASES),
    pytest.mark.skipif(
        not django_settings.CELERY_BROKER_URL.startswith("redis://"),
        reason="needs the Redis broker (run through scripts/test.sh)",
    ),
]

_LOGGERS = ("", "celery", "celery.task", "celery.redirected", "multiprocessing")
_ENV = ("_MP_FORK_LOGLEVEL_", "_MP_FORK_LOGFILE_", "_MP_FORK_LOGFORMAT_")


@contextmanager
def _logging_restored() -> Iterator[None]:
    loggers = {name: logging.getLogger(name) for name in _LOGGERS}
    saved = {name: (list(lg.handlers), lg.level, lg.propagate) for name, lg in loggers.items()}
    env = {key: os.environ.get(key) for key in _ENV}
    setup = Logging._setup
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            loggers[name].handlers[:] = handlers
            loggers[name].setLevel(level)
            loggers[name].propagate = propagate
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Logging._setup = setup


def _queued_messages() -> int:
    with celery_app.connection_for_write() as connection:
        return connection.default_channel.client.llen(celery_app.conf.task_default_queue)


def _created() -> list[Instance]:
    """Instances of the fleet that services has created (their URL is written after the runtime starts)."""
    return list(Instance.objects.filter(status__in=[InstanceStatus.STARTING, InstanceStatus.IDLE]).exclude(url=""))


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_runs_a_tick_sent_to_the_queue_in_a_worker(local_instances: Path, settings):
    settings.POOL_MIN_IDLE = 2
    settings.POOL_STARTING_RECHECK_MS = 0  # no follow-up tick: the queue must end empty
    assert not celery_app.conf.task_always_eager, "the task must go through the broker"
    celery_app.control.purge()  # stale messages of earlier runs must not run here

    pool_tick_task.delay()
    # The message waits in Redis: nothing has run yet.
    assert _queued_messages() == 1
    assert Instance.objects.count() == 0

    try:
        with _logging_restored(), start_worker(
            celery_app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
        ):
            # Rows are written as `starting` before services creates the runtime; waiting for the
            # URL too means the worker's tick has finished creating them before it is stopped.
            fleet = wait_until(lambda: len(_created()) == 2 and _created(), timeout=30, interval=0.1,
                               message="2 starting/idle instances created by the worker's tick")
        assert _queued_messages() == 0
        assert len(list_runtime_processes(local_instances)) == 2
        assert Instance.objects.count() == 2
    finally:
        celery_app.control.purge()
        for instance_id in Instance.objects.exclude(status=InstanceStatus.DELETED).values_list("pk", flat=True):
            instance_destroy(instance_id=instance_id, actor="cli", reason="test")
    assert list_runtime_processes(local_instances) == []
    assert {i.status for i in Instance.objects.filter(pk__in=[i.pk for i in fleet])} == {InstanceStatus.DELETED}


@pytest.mark.usefixtures("pool_work_inline")  # the tick runs here, not in a worker
def test_it_a_tick_that_leaves_the_pool_short_queues_an_early_recheck(local_instances: Path, settings):
    settings.POOL_MIN_IDLE = 2
    settings.POOL_STARTING_RECHECK_MS = 5000
    celery_app.control.purge()
    try:
        report = pool_tick_task()  # run here; what it queues goes to the real Redis
        assert report["recheckInMs"] == 5000 and report["steps"]["top_up"]["created"] == 2
        assert _queued_messages() == 1
        with celery_app.connection_for_write() as connection:
            raw = connection.default_channel.client.lindex(celery_app.conf.task_default_queue, 0)
        message = json.loads(raw)
        assert message["headers"]["task"] == "pool_app.tasks.pool_tick_task" and message["headers"]["eta"]
    finally:
        celery_app.control.purge()
        for instance in Instance.objects.all():
            instance_destroy(instance_id=instance.pk, actor="cli", reason="test")
