"""End to end with real `python -m runtime` processes: fill, claim, refill, restart, destroy."""
from __future__ import annotations

from pathlib import Path

import pytest

from pool_app.models import Instance, InstanceEvent, InstanceStatus
from pool_app.services import instance_destroy, pool_tick
from services_app import services as services_layer
from services_app.models import InstanceInfra
from services_app.providers.local import list_runtime_processes
from tests.conftest import ALL_DATABASES, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(databases=ALL_DATABASES), pytest.mark.usefixtures("pool_work_inline")]


def _count(status: str) -> int:
    return Instance.objects.filter(status=status).count()


def _tick_until_idle(n: int) -> None:
    wait_until(lambda: pool_tick() and _count(InstanceStatus.IDLE) >= n, timeout=30, interval=0.2, message=f"{n} idle")


def test_it_fills_claims_refills_and_destroys_with_real_runtimes(local_instances: Path, settings, api):
    settings.POOL_MIN_IDLE = 3

    report = pool_tick()
    assert report["steps"]["top_up"]["created"] == 3
    assert _count(InstanceStatus.STARTING) == 3
    assert len(list_runtime_processes(local_instances)) == 3
    _tick_until_idle(3)

    status = api.get("/api/pool/status").json()
    assert status["counts"]["idle"] == 3
    assert {i["status"] for i in status["instances"]} == {"idle"}

    response = api.post("/api/pool/claim", {"agentName": "Tokyo planner", "instructions": "Plan trips to Tokyo."}, format="json")
    assert response.status_code == 200, response.content
    claim = response.json()
    assert claim["inviteUrl"].startswith("https://dev.convos.org/v2?i=")
    assert len(claim["conversationId"]) == 32
    assert claim["joined"] is False and claim["status"] == "created" and claim["agentName"] == "Tokyo planner"
    claimed = Instance.objects.get(pk=claim["instanceId"])
    assert claimed.status == InstanceStatus.CLAIMED and claimed.invite_url == claim["inviteUrl"]
    identity = (local_instances / claimed.pk / "data" / "workspace" / "IDENTITY.md").read_text()
    assert "## Custom Instructions" in identity and "Plan trips to Tokyo." in identity
    assert list(InstanceEvent.objects.filter(instance_id=claimed.pk).values_list("to_status", flat=True)) == [
        "claimed", "claiming", "idle", "starting"
    ]

    # The next tick replaces the claimed instance; the claimed one is left alone.
    assert pool_tick()["steps"]["top_up"]["created"] == 1
    _tick_until_idle(3)
    assert _count(InstanceStatus.CLAIMED) == 1
    assert len(list_runtime_processes(local_instances)) == 4

    for instance in Instance.objects.exclude(status=InstanceStatus.DELETED):
        assert instance_destroy(instance_id=instance.pk, actor="cli", reason="test teardown")
    assert list_runtime_processes(local_instances) == []
    assert list(local_instances.iterdir()) == []
    assert InstanceInfra.objects.count() == 0
    assert _count(InstanceStatus.DELETED) == 4


def test_it_keeps_the_fleet_across_a_stop_and_start(local_instances: Path, settings, api):
    settings.POOL_MIN_IDLE = 2
    pool_tick()
    _tick_until_idle(2)
    claim = api.post("/api/pool/claim", {"agentName": "Keeper", "instructions": "Remember."}, format="json").json()
    ids = set(Instance.objects.values_list("pk", flat=True))

    services_layer.local_fleet_stop()
    assert list_runtime_processes(local_instances) == []
    settings.POOL_MIN_IDLE = 0  # only watch what happens to the existing fleet
    pool_tick()  # stopped instances report SLEEPING: nothing is destroyed
    assert set(Instance.objects.exclude(status=InstanceStatus.DELETED).values_list("pk", flat=True)) == ids
    assert {i.status for i in Instance.objects.all()} == {InstanceStatus.SLEEPING}

    assert len(services_layer.local_fleet_start()) == 2
    def claimed_and_healthy() -> bool:
        pool_tick()
        instance = Instance.objects.get(pk=claim["instanceId"])
        return instance.status == InstanceStatus.CLAIMED and instance.deploy_status == "healthy"

    wait_until(claimed_and_healthy, timeout=30, interval=0.2, message="claimed instance back and healthy")
    _tick_until_idle(1)
    # The conversation binding survived the restart: the instance still refuses a second provision.
    status = services_layer.instance_convos_status(instance_id=claim["instanceId"])
    assert status["conversationId"] == claim["conversationId"]
    for instance_id in ids:
        instance_destroy(instance_id=instance_id, actor="cli", reason="test teardown")
    assert list_runtime_processes(local_instances) == []
