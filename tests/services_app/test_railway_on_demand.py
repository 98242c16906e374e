"""Railway deploy status on demand: status_batch asks Railway only about the instances a health
check does not vouch for, in aliased `project(id:)` lookups of up to 50, with a full paged sweep
every RAILWAY_FULL_SYNC_MS and after a failed batch (services_app/services/status.py)."""
from __future__ import annotations

import json
import secrets
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from services_app import health_checks
from services_app.models import InstanceInfra
from services_app.providers.base import InfraRef, ProviderError
from services_app.providers.railway import RailwayProvider
from services_app.providers.railway_client import RailwayClient
from services_app.services import ServicesError, status, status_batch
from tests.services_app.conftest import services_on_railway
from tests.services_app.fake_railway import FakeRailway

DATABASES = ["default", "services"]
LONG_AGO = timedelta(hours=1)


class Health:
    """The fleet's answers to health checks: healthy unless named in `failing`; records each URL."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.checked: list[str] = []

    def __call__(self, urls, **_):
        self.checked.extend(urls)
        return [url not in self.failing for url in urls]


@pytest.fixture
def health(monkeypatch) -> Health:
    answers = Health()
    monkeypatch.setattr(health_checks, "check_batch", answers)
    return answers


@pytest.fixture
def railway(settings, rsps, health) -> FakeRailway:
    api = services_on_railway(settings)
    token = secrets.token_hex(16)
    settings.RAILWAY_API_TOKENS = [token]
    settings.RAILWAY_FULL_SYNC_MS = 300_000
    settings.RAILWAY_RECENT_CHANGE_MS = 300_000
    return FakeRailway(api, tokens=[token], workspace_id="ws-1").install(rsps)


class Clock:
    """status_batch's notion of now, moved on by hand."""

    def __init__(self, monkeypatch) -> None:
        self.now = timezone.now()
        monkeypatch.setattr(status, "_now", lambda: self.now)

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


def fleet(railway: FakeRailway, count: int, *, deploy_status: str = "SUCCESS", changed_ago: timedelta = LONG_AGO) -> list[str]:
    """`count` Railway instances services knows, last read as `deploy_status`, changed `changed_ago`."""
    ids, rows = [], []
    for _ in range(count):
        project = railway.seed_project(status="SUCCESS")
        service = railway.service_of(project["id"])
        instance_id = f"od{uuid.uuid4().hex[:12]}"
        ids.append(instance_id)
        rows.append(InstanceInfra(
            instance_id=instance_id, provider="railway", railway_project_id=project["id"], railway_service_id=service["id"],
            railway_environment_id=service["environmentId"], url=f"https://{service['domains'][0]}", deploy_status=deploy_status,
            secret_nonce=secrets.token_hex(8), instance_services_token_hash=secrets.token_hex(32),
        ))
    InstanceInfra.objects.using("services").bulk_create(rows)
    InstanceInfra.objects.using("services").filter(instance_id__in=ids).update(updated_at=timezone.now() - changed_ago)
    return ids


def url_of(instance_id: str) -> str:
    return InstanceInfra.objects.using("services").get(instance_id=instance_id).url


def project_of(instance_id: str) -> str:
    return InstanceInfra.objects.using("services").get(instance_id=instance_id).railway_project_id


def asked_projects(railway: FakeRailway) -> list[set[str]]:
    """The project ids of each aliased lookup call, in order."""
    return [set(variables.values()) for field, variables, _ in railway.log if field == "project"]


def settle(railway: FakeRailway, ids: list[str]) -> None:
    """Run the first batch (a full sweep: nothing recorded one yet) and forget its calls."""
    status_batch(instance_ids=ids)
    assert railway.calls["projects"] >= 1
    railway.calls.clear()
    railway.log.clear()
    railway.requests = railway.aliases_asked = 0


# --- through status_batch ------------------------------------------------------------------------------
@pytest.mark.django_db(databases=DATABASES)
def test_it_makes_no_railway_call_for_a_steady_healthy_fleet_between_full_sweeps(railway, health, clock):
    ids = fleet(railway, 80)
    settle(railway, ids)
    for _ in range(5):
        clock.advance(30_000)
        statuses = status_batch(instance_ids=ids)
        assert {s["status"] for s in statuses.values()} == {"healthy"}
        assert {s["deployStatus"] for s in statuses.values()} == {"SUCCESS"}
    assert railway.requests == 0
    assert len(health.checked) == 80 * 6  # every instance is still health-checked every batch


@pytest.mark.django_db(databases=DATABASES)
def test_it_asks_about_starting_failing_and_recently_changed_instances_in_one_call(railway, health, clock):
    steady = fleet(railway, 20)
    starting = fleet(railway, 1, deploy_status="DEPLOYING")
    failing = fleet(railway, 1)
    settle(railway, steady + starting + failing)
    fresh = fleet(railway, 1, changed_ago=timedelta(seconds=10))
    railway.set_status(project_of(starting[0]), "DEPLOYING")
    health.failing.add(url_of(failing[0]))
    InstanceInfra.objects.using("services").filter(instance_id=starting[0]).update(deploy_status="DEPLOYING")
    clock.advance(30_000)
    health.checked.clear()

    statuses = status_batch(instance_ids=steady + starting + failing + fresh)

    assert railway.requests == 1 and railway.calls["project"] == 1 and railway.calls["projects"] == 0
    assert asked_projects(railway) == [{project_of(i) for i in starting + failing + fresh}]
    assert statuses[starting[0]]["status"] == "deploying"
    assert statuses[failing[0]]["status"] == "unreachable" and statuses[failing[0]]["deployStatus"] == "SUCCESS"
    assert statuses[fresh[0]]["status"] == "healthy"
    assert url_of(starting[0]) not in health.checked  # a deployment that is not running is never pinged
    # Rows are written only where the provider's answer changed: the fresh one still says SUCCESS.
    row = InstanceInfra.objects.using("services").get(instance_id=fresh[0])
    assert row.deploy_status == "SUCCESS" and row.deploy_checked_at is None


@pytest.mark.django_db(databases=DATABASES)
def test_it_asks_about_an_instance_once_it_stops_answering_and_records_what_railway_says(railway, health, clock):
    ids = fleet(railway, 10)
    settle(railway, ids)
    railway.set_status(project_of(ids[3]), "CRASHED")
    health.failing.add(url_of(ids[3]))
    clock.advance(30_000)

    assert status_batch(instance_ids=ids)[ids[3]]["status"] == "deploy_failed"
    assert asked_projects(railway) == [{project_of(ids[3])}]
    assert InstanceInfra.objects.using("services").get(instance_id=ids[3]).deploy_status == "CRASHED"
    clock.advance(30_000)
    status_batch(instance_ids=ids)  # last known not running: asked again, not pinged
    assert railway.calls["project"] == 2


@pytest.mark.django_db(databases=DATABASES)
def test_it_runs_the_full_sweep_once_railway_full_sync_ms_has_passed(railway, health, clock, settings):
    ids = fleet(railway, 120)
    settle(railway, ids)
    clock.advance(settings.RAILWAY_FULL_SYNC_MS - 1)
    status_batch(instance_ids=ids)
    assert railway.requests == 0
    clock.advance(1)
    status_batch(instance_ids=ids)
    assert railway.calls["projects"] == 3 and railway.calls["project"] == 0  # the paged listing, 50 a page
    clock.advance(30_000)
    status_batch(instance_ids=ids)
    assert railway.calls["projects"] == 3  # and not again until the next interval


@pytest.mark.django_db(databases=DATABASES)
def test_it_runs_the_full_sweep_after_a_failed_batch(railway, health, clock):
    ids = fleet(railway, 10)
    settle(railway, ids)
    health.failing.add(url_of(ids[0]))
    railway.fail("project", status=400, message="Problem with the query (fake)")
    clock.advance(30_000)
    with pytest.raises(ServicesError):
        status_batch(instance_ids=ids)
    assert railway.calls["projects"] == 0
    clock.advance(30_000)
    statuses = status_batch(instance_ids=ids)
    assert railway.calls["projects"] == 1 and railway.calls["project"] == 1  # the sweep, after the failed lookup
    assert statuses[ids[0]]["status"] == "unreachable"
    clock.advance(30_000)
    status_batch(instance_ids=ids)
    assert railway.calls["projects"] == 1  # the sweep cleared the mark


@pytest.mark.django_db(databases=DATABASES)
def test_it_marks_only_the_instance_whose_alias_is_not_found_removed(railway, health, clock):
    ids = fleet(railway, 6)
    settle(railway, ids)
    railway.missing_project_message = "Not Authorized"  # what Railway says about a deleted project
    del railway.projects[project_of(ids[2])]
    for instance_id in ids[:4]:
        health.failing.add(url_of(instance_id))
    clock.advance(30_000)

    statuses = status_batch(instance_ids=ids)

    assert statuses[ids[2]]["deployStatus"] == "REMOVED" and statuses[ids[2]]["status"] == "deploy_failed"
    assert {statuses[i]["deployStatus"] for i in ids if i != ids[2]} == {"SUCCESS"}
    # Project! is non-null: the error nulled the answer, so the three others were asked once more.
    assert asked_projects(railway) == [{project_of(i) for i in ids[:4]}, {project_of(i) for i in (ids[0], ids[1], ids[3])}]
    assert InstanceInfra.objects.using("services").get(instance_id=ids[2]).deploy_status == "REMOVED"


@pytest.mark.django_db(databases=DATABASES)
def test_it_asks_about_120_instances_in_3_calls_and_records_them_in_one_statement(railway, health, clock):
    ids = fleet(railway, 130)
    settle(railway, ids)
    for instance_id in ids[:120]:
        health.failing.add(url_of(instance_id))
        railway.set_status(project_of(instance_id), "CRASHED")
    clock.advance(30_000)

    with CaptureQueriesContext(connections["services"]) as queries:
        statuses = status_batch(instance_ids=ids)

    assert railway.calls["project"] == 3 and railway.aliases_asked == 120 and railway.requests == 3
    assert [len(asked) for asked in asked_projects(railway)] == [50, 50, 20]
    assert all(statuses[i]["deployStatus"] == "CRASHED" for i in ids[:120])
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(writes) == 1  # 120 changed rows, one bulk statement (WRITE_BATCH=500)
    assert InstanceInfra.objects.using("services").filter(instance_id__in=ids[:120], deploy_status="CRASHED",
                                                          deploy_checked_at=clock.now).count() == 120


@pytest.mark.django_db(databases=DATABASES)
def test_it_refuses_to_call_every_asked_instance_removed(railway, health, clock):
    ids = fleet(railway, 3)
    settle(railway, ids)
    for instance_id in ids:
        railway.projects[project_of(instance_id)]["workspaceId"] = "ws-other"  # e.g. a token of another workspace
        health.failing.add(url_of(instance_id))
    clock.advance(30_000)
    with pytest.raises(ServicesError) as failed:
        status_batch(instance_ids=ids)
    assert "RAILWAY_API_TOKENS" in failed.value.message
    assert set(InstanceInfra.objects.using("services").values_list("deploy_status", flat=True)) == {"SUCCESS"}


# --- the provider's aliased lookup, on the wire ----------------------------------------------------------
def test_it_sends_one_aliased_document_per_50_projects(rsps):
    token = secrets.token_hex(16)
    api = f"https://railway-{uuid.uuid4().hex[:8]}.test/graphql/v2"
    fake = FakeRailway(api, tokens=[token], workspace_id="ws-1").install(rsps)
    client = RailwayClient(api, [token], rps=1000.0, create_interval_s=0, timeout_s=5.0, max_retries=0)
    provider = RailwayProvider(client=client, workspace_id="ws-1", environment_name="production", image="img")
    projects = [fake.seed_project() for _ in range(51)]
    fake.set_status(projects[50]["id"], "SLEEPING")
    refs = [InfraRef(instance_id=f"i{n}", url="https://stale", railway_project_id=p["id"],
                     railway_service_id=fake.service_of(p["id"])["id"]) for n, p in enumerate(projects)]

    states = provider.deploy_states(refs, full=False)

    bodies = [json.loads(call.request.body) for call in rsps.calls]
    assert [b["operationName"] for b in bodies] == ["ProjectDeployStates", "ProjectDeployStates"]
    assert bodies[0]["variables"] == {f"p{n}": projects[n]["id"] for n in range(50)}
    assert bodies[1]["variables"] == {"p0": projects[50]["id"]}
    assert all(call.request.headers["Authorization"] == f"Bearer {token}" for call in rsps.calls)
    assert states["i50"].deploy_status == "SLEEPING" and states["i0"].deploy_status == "SUCCESS"
    assert states["i0"].url == f"https://{fake.service_of(projects[0]['id'])['domains'][0]}"


def test_it_raises_on_an_alias_error_that_is_not_a_missing_project(rsps, monkeypatch):
    token = secrets.token_hex(16)
    api = f"https://railway-{uuid.uuid4().hex[:8]}.test/graphql/v2"
    fake = FakeRailway(api, tokens=[token], workspace_id="ws-1").install(rsps)
    client = RailwayClient(api, [token], rps=1000.0, create_interval_s=0, timeout_s=5.0, max_retries=0)
    provider = RailwayProvider(client=client, workspace_id="ws-1", environment_name="production", image="img")
    project = fake.seed_project()
    monkeypatch.setattr(fake, "_gql_project", lambda id: (_ for _ in ()).throw(LookupError("Field 'environments' is restricted")))
    with pytest.raises(ProviderError) as failed:
        provider.deploy_states([InfraRef(instance_id="x", railway_project_id=project["id"])], full=False)
    assert "restricted" in failed.value.message
