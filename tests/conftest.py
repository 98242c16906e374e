"""Fixtures shared by the whole suite."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from rest_framework.test import APIClient

from services_app.providers.local import list_runtime_processes, stop_strays
from tests.browser import browser_page  # noqa: F401 - a fixture for every test that looks at a page

ALL_DATABASES = ["default", "pool", "services", "templates"]


def on_postgres() -> bool:
    return connections["pool"].vendor == "postgresql"


@pytest.fixture
def postgres_only() -> None:
    """Locking is only proven on PostgreSQL: SQLite has no row locks to test."""
    if not on_postgres():
        pytest.skip("needs PostgreSQL (run through `make test`)")


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def pool_work_inline(settings) -> None:
    """Pool work that fans out (creations in top-up and replenish, cleanses, destroys, redeploys)
    runs in the test's own thread: a worker thread has its own database connection, which cannot see
    the rows of a test that runs in a transaction. With it, such tests need no `transaction=True`
    (which flushes four databases after each test). Tests of real concurrency keep that instead."""
    settings.POOL_CREATE_CONCURRENCY = 1


@pytest.fixture
def local_instances(tmp_path: Path, settings) -> Iterator[Path]:
    """Local infra provider writing under a scratch directory; kills every runtime it started."""
    directory = tmp_path / "instances"
    settings.INFRA_PROVIDER = "local"
    settings.LOCAL_INSTANCES_DIR = directory
    settings.LOCAL_RUNTIME_BOOT_SECONDS = 0.0
    yield directory
    stop_strays(directory)
    assert list_runtime_processes(directory) == [], "runtime processes left behind"


@pytest.fixture(autouse=True)
def no_orphan_sweep(settings) -> None:
    """The orphan sweep lists every enabled provider account on a tick's first run; a test about
    something else would pay for (and report errors of) listings it never set up. Tests of the
    sweep turn it on with settings.ORPHAN_SWEEP_MS; child processes get ORPHAN_SWEEP_MS from the
    environment they are given."""
    settings.ORPHAN_SWEEP_MS = 0


@pytest.fixture(autouse=True)
def refill_ticks(monkeypatch) -> list[str]:
    """A claim that leaves the pool short enqueues a tick (`pool_app.services.claim._enqueue_tick`):
    here it is recorded instead, so no test sends ticks to the real broker. A test may read the list."""
    from pool_app.services import claim

    sent: list[str] = []
    monkeypatch.setattr(claim, "_enqueue_tick", lambda: sent.append("pool_tick"))
    claim._refill_asked.reset()  # each test starts with no refill asked for recently
    return sent


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.POOL_API_KEY}")
    return client


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


@pytest.fixture
def operator_login():
    """`operator_login("name")`: a test client logged in to the admin as a superuser of that name."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    def login(username: str) -> Client:
        user = get_user_model().objects.create_superuser(username, f"{username}@example.com", "not-used")
        client = Client()
        client.force_login(user)
        return client

    return login


@pytest.fixture(scope="session", autouse=True)
def _test_databases_released(django_db_setup, django_db_blocker):
    """At the end of the run, end what still holds the test databases: the live server's thread
    keeps a connection of its own, and PostgreSQL refuses to drop a database in use (the drop
    would fail with a warning and leave the database behind)."""
    yield
    with django_db_blocker.unblock():
        for alias in ALL_DATABASES:
            connection = connections[alias]
            # Only test databases this run created (a run with no database test made none).
            if connection.vendor != "postgresql" or not str(connection.settings_dict.get("NAME", "")).startswith("test_"):
                continue
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
