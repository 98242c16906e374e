"""Restoring the pool database from a dump older than the fleet (issue 11, item 5).

A dump taken before a claim, restored after it, lists the claimed instance as idle again while the
instance itself holds the user's conversation. The pool must never hand it out a second time: the
tick's idle audit takes it out as `tainted`, and a claim that reaches it first is refused by the
instance (`already_bound`) and moves on to another one. The dump and restore are the real tools
(pg_dump -Fc, pg_restore --clean) on this run's pool test database, as the README describes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from pool_app.config import pool_settings_update
from pool_app.models import Instance, InstanceStatus as S
from pool_app.services import pool_tick
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases=ALL_DATABASES)]
CLAIM = "/api/pool/claim"


def _tool(name: str) -> str:
    found = shutil.which(name) or f"/usr/lib/postgresql/15/bin/{name}"
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed")
    return found


def _pg(tool: str, *args: str) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client tool against the pool alias's test database."""
    db = connections["pool"].settings_dict
    env = {**os.environ, "PGPASSWORD": str(db.get("PASSWORD") or "")}
    command = [_tool(tool), "-h", str(db.get("HOST") or "127.0.0.1"), "-p", str(db.get("PORT") or 5432),
               "-U", str(db.get("USER") or "postgres"), "-d", db["NAME"], *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline, postgres_only) -> FakeServices:
    settings.POOL_MIN_IDLE = 0  # the tick creates nothing: only what the restore brought back matters
    settings.POOL_IDLE_AUDIT_SAMPLE = 10
    return FakeServices().install(monkeypatch)


def _client() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}")
    return client


def _idle(fake: FakeServices, n: int) -> list[str]:
    ids = [Instance.objects.create(status=S.IDLE, deploy_status="healthy").pk for _ in range(n)]
    for instance_id in ids:
        fake.create_instance(instance_id)
    return ids


def _claim_after_a_dump(fake: FakeServices, tmp_path: Path) -> tuple[str, list[str]]:
    """Two idle instances, a dump, a claim of one, the dump restored: returns (claimed id, all ids)."""
    ids = _idle(fake, 2)
    dump = tmp_path / "pool.dump"
    dumped = _pg("pg_dump", "-Fc", "-f", str(dump))
    assert dumped.returncode == 0, dumped.stderr

    response = _client().post(CLAIM, {"agentName": "before-restore"}, format="json")
    assert response.status_code == 200, response.content
    claimed = response.json()["instanceId"]
    assert Instance.objects.get(pk=claimed).status == S.CLAIMED and fake.instances[claimed].bound

    connections["pool"].close()  # pg_restore --clean drops the tables this connection may hold
    restored = _pg("pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner", str(dump))
    assert restored.returncode == 0, restored.stderr
    # The restore brought the stale state back: the claimed instance is listed as idle again.
    assert Instance.objects.get(pk=claimed).status == S.IDLE
    return claimed, ids


def test_it_the_tick_takes_an_instance_claimed_after_the_dump_out_of_the_pool(fake, tmp_path):
    claimed, ids = _claim_after_a_dump(fake, tmp_path)
    (other,) = [i for i in ids if i != claimed]

    report = pool_tick()

    assert report["steps"]["audit_idle"]["bound"] == 1, report
    row = Instance.objects.get(pk=claimed)
    assert row.status == S.TAINTED and row.needs_reset
    assert Instance.objects.get(pk=other).status == S.IDLE
    # The next claims get the other instance, then nothing: never the one a user holds.
    first = _client().post(CLAIM, {"agentName": "after-restore"}, format="json")
    assert first.status_code == 200 and first.json()["instanceId"] == other
    second = _client().post(CLAIM, {"agentName": "after-restore-2"}, format="json")
    assert second.status_code == 503, second.content
    assert fake.calls.get("reset", 0) == 0  # the user's instance was never wiped


def test_it_a_claim_before_any_tick_skips_the_instance_that_is_already_bound(fake, tmp_path):
    claimed, ids = _claim_after_a_dump(fake, tmp_path)
    (other,) = [i for i in ids if i != claimed]
    assert claimed == ids[0]  # the oldest idle row: the one the next claim reserves first again

    response = _client().post(CLAIM, {"agentName": "after-restore"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["instanceId"] == other
    # The instance refused the second binding (409 already_bound): out of the pool, not wiped.
    row = Instance.objects.get(pk=claimed)
    assert row.status == S.TAINTED
    assert "already bound" in row.last_error, row.last_error
    assert fake.calls.get("reset", 0) == 0


def test_it_keeps_the_users_instance_while_paused_and_once_protected(fake, settings, tmp_path):
    """The restored row no longer says the instance was claimed (claimed_at, agent, owner are gone),
    so once tainted it is an unclaimed tainted instance, which remove_dead replaces after
    POOL_STUCK_TIMEOUT_MS. The README's procedure: restore paused (the pause flag lives in the pool
    database, so set it again after the restore), review the tainted rows, protect the ones to keep."""
    claimed, _ = _claim_after_a_dump(fake, tmp_path)
    pool_settings_update(changed_by="test", paused=True)

    pool_tick()
    # Tainted for longer than POOL_STUCK_TIMEOUT_MS: what remove_dead would replace.
    Instance.objects.filter(pk=claimed).update(status_changed_at=timezone.now() - timedelta(days=1))
    pool_tick()
    assert Instance.objects.get(pk=claimed).status == S.TAINTED  # taken out, not destroyed while paused
    assert fake.calls.get("destroy", 0) == 0

    Instance.objects.filter(pk=claimed).update(protected=True)  # the operator keeps it (admin: protected)
    pool_settings_update(changed_by="test", paused=False)
    pool_tick()
    assert Instance.objects.get(pk=claimed).status == S.TAINTED
    assert fake.calls.get("destroy", 0) == 0 and claimed in fake.instances
