"""A lock shared by every process so that only one tick runs at a time.

On PostgreSQL it is a session advisory lock on the pool database: taking it never waits, and if
the process holding it dies the server drops the lock with the connection, so a crashed tick
cannot wedge the pool. Elsewhere (SQLite in development) it is a lease row taken with a
conditional update, expiring after `lease` so a killed process frees it eventually.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from pool_app.models import TickLease

logger = logging.getLogger(__name__)
from pool_app.db import DB


def _advisory_key(name: str) -> int:
    # pg advisory locks take a signed 64-bit key; derive a stable one from the name.
    return int.from_bytes(hashlib.sha256(f"convos:{name}".encode()).digest()[:8], "big", signed=True)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]


@contextmanager
def single_flight(name: str, *, lease: timedelta = timedelta(minutes=10)) -> Iterator[bool]:
    """`with single_flight("tick") as acquired:` — acquired is False if another holder runs."""
    lock = advisory_lock if connections[DB].vendor == "postgresql" else lease_lock
    with lock(name, lease=lease) as acquired:
        yield acquired


@contextmanager
def advisory_lock(name: str, *, lease: timedelta | None = None) -> Iterator[bool]:
    connection = connections[DB]
    key = _advisory_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@contextmanager
def lease_lock(name: str, *, lease: timedelta) -> Iterator[bool]:
    holder = _holder()
    now = timezone.now()
    try:
        with transaction.atomic(using=DB):
            TickLease.objects.using(DB).get_or_create(name=name, defaults={"expires_at": now - timedelta(seconds=1)})
    except IntegrityError:
        pass  # created by a concurrent caller
    acquired = TickLease.objects.using(DB).filter(name=name, expires_at__lt=now).update(holder=holder, expires_at=now + lease) == 1
    try:
        yield acquired
    finally:
        if acquired:
            TickLease.objects.using(DB).filter(name=name, holder=holder).update(expires_at=timezone.now())
