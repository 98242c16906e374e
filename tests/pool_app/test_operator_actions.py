"""Operator actions with real `python -m runtime` instances.

Each action has three doors, the REST endpoint (actor api), the management command (actor cli) and,
where there is one, the admin (actor admin); all three must reach the same service with the same
effect and say who did it in the event log. Dry runs change nothing; protected instances are never
drained, destroyed or claimed.
"""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from pool_app.config import pool_config
from pool_app.models import Instance, InstanceEvent, InstanceStatus, PoolSettingsChange
from pool_app.services import pool_tick
from services_app.providers.local import list_runtime_processes
from tests.conftest import ALL_DATABASES, wait_until

INSTANCES_URL = reverse("admin:pool_app_instance_changelist")


@pytest.fixture
def operator(operator_login):
    return operator_login("ops-bob")


# --- helpers -----------------------------------------------------------------------------------------
def _idle(*, settings, count: int) -> list[str]:
    """`count` idle instances made by the tick, oldest first; the tick then stops creating."""
    settings.POOL_MIN_IDLE = count
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=InstanceStatus.IDLE).count() >= count,
               timeout=30, interval=0.2, message=f"{count} idle")
    settings.POOL_MIN_IDLE = 0
    return list(Instance.objects.filter(status=InstanceStatus.IDLE).order_by("created_at").values_list("pk", flat=True))


def _tick_until_all_idle() -> None:
    def all_idle() -> bool:
        pool_tick()
        return set(Instance.objects.exclude(status=InstanceStatus.DELETED).values_list("status", flat=True)) == {InstanceStatus.IDLE}

    wait_until(all_idle, timeout=30, interval=0.2, message="every live instance idle")


def _snapshot(directory: Path) -> tuple:
    """Everything an action could change: rows, the event log, the running processes."""
    return (
        sorted(Instance.objects.values_list("pk", "status", "deploy_status", "url", "last_error")),
        InstanceEvent.objects.count(),
        sorted(list_runtime_processes(directory)),
    )


def _status(instance_id: str) -> str:
    return Instance.objects.get(pk=instance_id).status


def _events(instance_id: str) -> set[tuple[str, str, str]]:
    return set(InstanceEvent.objects.filter(instance_id=instance_id).values_list("from_status", "to_status", "actor"))


def _command(*args: str) -> dict:
    """Run a command; returns the JSON result it prints before its summary line."""
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    text = out.getvalue()
    return json.loads(text[: text.rindex("}") + 1])


def _admin_action(client: Client, action: str, ids: list[str], **extra: str):
    return client.post(INSTANCES_URL, {"action": action, "_selected_action": ids, "index": "0", **extra})


def _admin_operation(client: Client, name: str, **fields):
    prefix = name.replace("-", "_")
    data = {f"{prefix}-{k}": ("on" if v is True else v) for k, v in fields.items() if v is not False}
    response = client.post(reverse("admin:pool_app_poolsettings_operation", args=[name]), data)
    assert response.status_code == 302, response.content[:500]
    return response


def _messages(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


# --- replenish ---------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_replenishes_the_same_way_from_the_api_the_command_and_admin(local_instances: Path, settings, api, operator):
    settings.POOL_MIN_IDLE = 0
    settings.POOL_MAX_TOTAL = 3

    response = api.post("/api/pool/replenish", {"count": 1}, format="json")
    assert response.status_code == 200, response.content
    [by_api] = response.json()["instanceIds"]
    [by_cli] = _command("replenish", "--count", "1")["instanceIds"]
    before = set(Instance.objects.values_list("pk", flat=True))
    response = _admin_operation(operator, "replenish", count=1)
    [by_admin] = set(Instance.objects.values_list("pk", flat=True)) - before
    assert ("success", f"replenish: 1 instance(s): {by_admin}") in _messages(response)

    for instance_id, actor in ((by_api, "api"), (by_cli, "cli"), (by_admin, "admin")):
        assert _status(instance_id) == InstanceStatus.STARTING
        assert _events(instance_id) == {("", "starting", actor)}
    assert len(list_runtime_processes(local_instances)) == 3
    _tick_until_all_idle()

    # The cap on unclaimed instances holds through every door.
    capped = api.post("/api/pool/replenish", {"count": 2}, format="json").json()
    assert capped["instanceIds"] == [] and "POOL_MAX_TOTAL=3" in capped["note"]
    assert _command("replenish", "--count", "2")["instanceIds"] == []
    response = _admin_operation(operator, "replenish", count=2)
    assert ("warning", "replenish: capped by POOL_MAX_TOTAL=3") in _messages(response)
    assert Instance.objects.count() == 3 and len(list_runtime_processes(local_instances)) == 3


# --- drain -------------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_drains_idle_instances_from_every_door_but_never_protected_ones(local_instances: Path, settings, api, operator):
    # The two oldest are protected, so "oldest first" would pick them if protection were ignored.
    flagged, listed, *drainable = _idle(settings=settings, count=5)
    Instance.objects.filter(pk=flagged).update(protected=True)
    settings.PROTECTED_INSTANCES = [listed]

    before = _snapshot(local_instances)
    response = api.post("/api/pool/drain", {"count": 10, "dryRun": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"action": "drain", "dryRun": True, "instanceIds": drainable, "failed": {}, "note": ""}
    assert _command("drain", "--count", "10", "--dry-run")["instanceIds"] == drainable
    response = _admin_operation(operator, "drain", count=10, dry_run=True)
    assert [level for level, _ in _messages(response)] == ["info"]
    assert _snapshot(local_instances) == before

    assert api.post("/api/pool/drain", {"count": 1}, format="json").json()["instanceIds"] == [drainable[0]]
    assert _command("drain", "--count", "1")["instanceIds"] == [drainable[1]]
    response = _admin_operation(operator, "drain", count=10, dry_run=False)
    assert ("success", f"drain: 1 instance(s): {drainable[2]}") in _messages(response)

    for instance_id, actor in zip(drainable, ("api", "cli", "admin")):
        assert _status(instance_id) == InstanceStatus.DELETED
        assert {("idle", "destroying", actor), ("destroying", "deleted", actor)} <= _events(instance_id)
    assert _status(flagged) == _status(listed) == InstanceStatus.IDLE
    assert len(list_runtime_processes(local_instances)) == 2

    # Only protected instances are left idle: nothing to drain, and nothing to claim.
    assert api.post("/api/pool/drain", {"count": 10}, format="json").json()["instanceIds"] == []
    claim = api.post("/api/pool/claim", {"agentName": "Nope", "instructions": ""}, format="json")
    assert claim.status_code == 503, claim.content
    assert _status(flagged) == _status(listed) == InstanceStatus.IDLE


# --- destroy -----------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_destroys_one_instance_from_every_door_and_refuses_protected_ones(local_instances: Path, settings, api, operator):
    flagged, listed, a, b, c = _idle(settings=settings, count=5)
    Instance.objects.filter(pk=flagged).update(protected=True)
    settings.PROTECTED_INSTANCES = [listed]

    before = _snapshot(local_instances)
    response = api.delete(f"/api/pool/instances/{a}?dryRun=true")
    assert response.status_code == 200 and response.json()["dryRun"] is True and response.json()["instanceIds"] == [a]
    assert _command("destroy_instance", b, "--dry-run")["instanceIds"] == [b]
    confirm = _admin_action(operator, "destroy_selected", [c])  # admin's "dry run" is its confirmation page
    assert confirm.status_code == 200 and c in confirm.content.decode()
    assert _snapshot(local_instances) == before

    assert api.delete(f"/api/pool/instances/{a}").json()["instanceIds"] == [a]
    assert _command("destroy_instance", b)["instanceIds"] == [b]
    response = _admin_action(operator, "destroy_selected", [c], post="yes")
    assert ("success", f"destroy: 1 instance(s): {c}") in _messages(response)
    for instance_id, actor in ((a, "api"), (b, "cli"), (c, "admin")):
        assert _status(instance_id) == InstanceStatus.DELETED
        assert {("idle", "destroying", actor), ("destroying", "deleted", actor)} <= _events(instance_id)  # out of idle first: no claim can race it
    assert len(list_runtime_processes(local_instances)) == 2

    # Protected, by the flag or by PROTECTED_INSTANCES: refused by every door, dry run or not.
    for instance_id in (flagged, listed):
        for url in (f"/api/pool/instances/{instance_id}", f"/api/pool/instances/{instance_id}?dryRun=true"):
            response = api.delete(url)
            assert response.status_code == 409 and response.json()["code"] == "protected", response.content
        with pytest.raises(CommandError, match="protected"):
            _command("destroy_instance", instance_id)
    confirm = _admin_action(operator, "destroy_selected", [flagged, listed])
    assert confirm.content.decode().count("protected: will be refused") == 2
    response = _admin_action(operator, "destroy_selected", [flagged, listed], post="yes")
    assert sorted(_messages(response)) == sorted(
        ("warning", f"destroy refused for {pk}: Instance {pk} is protected") for pk in (flagged, listed))
    assert _status(flagged) == _status(listed) == InstanceStatus.IDLE
    assert len(list_runtime_processes(local_instances)) == 2

    # Gone or unknown: 404, and the command fails.
    assert api.delete(f"/api/pool/instances/{a}").status_code == 404
    assert api.delete("/api/pool/instances/nosuchinstance").status_code == 404
    with pytest.raises(CommandError, match="No live instance"):
        _command("destroy_instance", "nosuchinstance")


# --- redeploy and recheck ------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_redeploys_and_rechecks_one_instance_from_every_door(local_instances: Path, settings, api, operator):
    a, b, c = _idle(settings=settings, count=3)
    pids = sorted(list_runtime_processes(local_instances))

    response = api.post(f"/api/pool/instances/{a}/redeploy")
    assert response.status_code == 200 and response.json()["instanceIds"] == [a], response.content
    assert _command("redeploy", "--instance", b)["instanceIds"] == [b]
    response = _admin_action(operator, "redeploy_selected", [c])
    assert ("success", f"redeploy: 1 instance(s): {c}") in _messages(response)
    # Restarted, and kept out of `idle` (so not claimable) until seen healthy again.
    assert {_status(i) for i in (a, b, c)} == {InstanceStatus.STARTING}
    assert sorted(list_runtime_processes(local_instances)) != pids and len(list_runtime_processes(local_instances)) == 3

    # A recheck applies services' answer at once, as the tick would.
    wait_until(lambda: api.post(f"/api/pool/instances/{a}/recheck").json()["status"] == "idle", message="a idle")
    wait_until(lambda: call_command("recheck", b, stdout=StringIO()) or _status(b) == InstanceStatus.IDLE, message="b idle")
    wait_until(lambda: _admin_action(operator, "recheck_selected", [c]) and _status(c) == InstanceStatus.IDLE, message="c idle")
    for instance_id, actor in ((a, "api"), (b, "cli"), (c, "admin")):
        assert {("idle", "starting", actor), ("starting", "idle", actor)} <= _events(instance_id)

    assert api.post("/api/pool/instances/nosuchinstance/redeploy").status_code == 404
    assert api.post("/api/pool/instances/nosuchinstance/recheck").status_code == 404
    with pytest.raises(CommandError, match="No live instance"):
        _command("redeploy", "--instance", "nosuchinstance")
    with pytest.raises(CommandError, match="No live instance"):
        call_command("recheck", "nosuchinstance", stdout=StringIO())
    with pytest.raises(CommandError, match="--dry-run goes with --all-idle"):
        _command("redeploy", "--instance", a, "--dry-run")


@pytest.mark.e2e
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_redeploys_every_idle_instance_from_every_door_and_dry_runs_change_nothing(local_instances: Path, settings, api, operator):
    ids = _idle(settings=settings, count=2)

    before = _snapshot(local_instances)
    response = api.post("/api/pool/redeploy", {"dryRun": True}, format="json")
    assert response.status_code == 200 and response.json()["instanceIds"] == ids, response.content
    assert _command("redeploy", "--all-idle", "--dry-run")["instanceIds"] == ids
    response = _admin_operation(operator, "redeploy-idle", dry_run=True)
    assert [level for level, _ in _messages(response)] == ["info"]
    assert _snapshot(local_instances) == before

    def redeploy_via(actor: str) -> list[str]:
        if actor == "api":
            return api.post("/api/pool/redeploy", {}, format="json").json()["instanceIds"]
        if actor == "cli":
            return _command("redeploy", "--all-idle")["instanceIds"]
        _admin_operation(operator, "redeploy-idle", dry_run=False)
        return [pk for pk in ids if ("idle", "starting", "admin") in _events(pk)]

    for actor in ("api", "cli", "admin"):
        assert sorted(redeploy_via(actor)) == sorted(ids)
        assert {_status(pk) for pk in ids} == {InstanceStatus.STARTING}
        for pk in ids:
            assert ("idle", "starting", actor) in _events(pk)
        _tick_until_all_idle()
    assert len(list_runtime_processes(local_instances)) == 2


# --- who may act ---------------------------------------------------------------------------------------
@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_refuses_operator_actions_without_the_operator_key(anon_api):
    calls = [
        ("post", "/api/pool/replenish", {"count": 1}),
        ("post", "/api/pool/drain", {"count": 1, "dryRun": True}),
        ("post", "/api/pool/redeploy", {"dryRun": True}),
        ("delete", "/api/pool/instances/abc", None),
        ("post", "/api/pool/instances/abc/redeploy", None),
        ("post", "/api/pool/instances/abc/recheck", None),
    ]
    for method, url, body in calls:
        response = getattr(anon_api, method)(url, body, format="json")
        assert response.status_code == 401, f"{method} {url}: {response.status_code}"
        assert "error" in response.json()
    anon_api.credentials(HTTP_AUTHORIZATION="Bearer not-the-key")
    for method, url, body in calls:
        assert getattr(anon_api, method)(url, body, format="json").status_code == 401
    assert Instance.objects.count() == 0 and InstanceEvent.objects.count() == 0


# --- pool settings -------------------------------------------------------------------------------------
@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_shows_and_changes_pool_settings_from_the_command(settings):
    settings.POOL_MIN_IDLE = 3
    settings.POOL_MAX_TOTAL = 50
    out = StringIO()
    call_command("pool_settings", stdout=out)
    assert "min_idle             3          (POOL_MIN_IDLE from the environment)" in out.getvalue()
    assert PoolSettingsChange.objects.count() == 0  # showing changes nothing

    out = StringIO()
    call_command("pool_settings", "--min-idle", "5", "--max-total", "9", "--pause", stdout=out)
    config = pool_config()
    assert (config.min_idle, config.max_total, config.paused) == (5, 9, True)
    changes = list(PoolSettingsChange.objects.order_by("field").values_list("field", "old_value", "new_value", "changed_by"))
    user = changes[0][3]
    assert user.startswith("cli:") and len(user) > len("cli:")
    assert changes == [("max_total", "", "9", user), ("min_idle", "", "5", user), ("paused", "False", "True", user)]
    assert "min_idle             5          (override)" in out.getvalue()

    call_command("pool_settings", "--clear", "min_idle", "max-total", "--resume", stdout=StringIO())
    config = pool_config()
    assert (config.min_idle, config.max_total, config.paused) == (3, 50, False)
    assert PoolSettingsChange.objects.count() == 6

    out = StringIO()
    call_command("pool_settings", "--resume", stdout=out)
    assert "No change" in out.getvalue() and PoolSettingsChange.objects.count() == 6
    with pytest.raises(CommandError, match="Both set and cleared: min_idle"):
        call_command("pool_settings", "--min-idle", "2", "--clear", "min_idle", stdout=StringIO())
    with pytest.raises(CommandError, match="must be 0 or more"):
        call_command("pool_settings", "--min-idle", "-1", stdout=StringIO())
    with pytest.raises(CommandError, match="not a pool setting"):
        call_command("pool_settings", "--clear", "paused", stdout=StringIO())
    assert PoolSettingsChange.objects.count() == 6


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_a_misspelt_dry_run_is_refused_not_taken_as_a_real_destroy(api):
    instance = Instance.objects.create(status=InstanceStatus.IDLE)
    response = api.delete(f"/api/pool/instances/{instance.pk}?dryRun=ture")
    assert response.status_code == 400 and "dryRun" in response.json()["error"]
    assert Instance.objects.get(pk=instance.pk).status == InstanceStatus.IDLE
