"""A claim whose process dies mid-provisioning is recovered by the tick; nothing is lost or doubled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import instance_destroy, pool_tick
from tests.conftest import ALL_DATABASES, wait_until

# The claim runs in a child process on the test databases: it sees only committed rows.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _database_env() -> dict[str, str]:
    """Point a child process at this test run's (PostgreSQL) databases."""
    names = {"default": "DATABASE_URL", "pool": "POOL_DATABASE_URL", "services": "SERVICES_DATABASE_URL", "templates": "TEMPLATES_DATABASE_URL"}
    env = {}
    for alias, variable in names.items():
        s = connections[alias].settings_dict
        env[variable] = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    return env


def test_it_recovers_a_claim_killed_while_provisioning(local_instances, settings, api, postgres_only):
    settings.POOL_MIN_IDLE = 1
    settings.LOCAL_RUNTIME_ENV = {"RUNTIME_PROVISION_DELAY_SECONDS": "3"}
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() == 1, timeout=30, interval=0.2, message="1 idle")
    (instance,) = Instance.objects.filter(status=S.IDLE)

    env = {**os.environ, **_database_env(), "LOCAL_INSTANCES_DIR": str(local_instances), "LOG_LEVEL": "WARNING"}
    claimer = subprocess.Popen([sys.executable, "manage.py", "claim", "--name", "Doomed", "--instructions", "x"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: Instance.objects.get(pk=instance.pk).status == S.CLAIMING, timeout=20, message="claiming")
        claimer.send_signal(signal.SIGKILL)  # dies while the instance is provisioning
        claimer.wait(10)
    finally:
        if claimer.poll() is None:
            claimer.kill()
    settings.POOL_MIN_IDLE = 0
    pool_tick()
    assert Instance.objects.get(pk=instance.pk).status == S.CLAIMING  # younger than CLAIM_TIMEOUT_MS: left alone

    settings.CLAIM_TIMEOUT_MS = 0
    report = pool_tick()
    assert report["steps"]["recover_stale_claims"] == {"recovered": 1, "idle": 1, "crashed": 0, "dead": 0}
    recovered = Instance.objects.get(pk=instance.pk)
    assert recovered.status == S.IDLE and recovered.agent_name == "" and recovered.claimed_at is None

    # The recovered instance is clean and handed out once, to the next claimer.
    response = api.post("/api/pool/claim", {"agentName": "Survivor", "instructions": "y"}, format="json")
    assert response.status_code == 200 and response.json()["instanceId"] == instance.pk
    identity = (local_instances / instance.pk / "data" / "workspace" / "IDENTITY.md").read_text()
    assert "Survivor" in identity and "Doomed" not in identity
    transitions = list(InstanceEvent.objects.filter(instance_id=instance.pk).order_by("id").values_list("to_status", "actor"))
    assert transitions == [("starting", "tick"), ("idle", "tick"), ("claiming", "cli"), ("resetting", "tick"), ("idle", "tick"),
                           ("claiming", "api"), ("claimed", "api")]
    assert Instance.objects.filter(status=S.CLAIMED).count() == 1
    instance_destroy(instance_id=instance.pk, actor="cli", reason="test teardown")
