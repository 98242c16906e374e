"""RailwayProvider against a stateful fake Railway (tests/services_app/fake_railway.py)."""
from __future__ import annotations

import json
import math

import pytest
import responses

from services_app.providers import get_provider
from services_app.providers.base import InfraRef, ProviderError
from services_app.providers.railway import RailwayProvider
from services_app.providers.railway_client import RailwayClient
from tests.services_app.conftest import FakeClock
from tests.services_app.fake_railway import FakeRailway

API = "https://railway.test/graphql/v2"
IMAGE = "ghcr.io/xmtplabs/convos-runtime:staging"
VARIABLES = {"INSTANCE_ID": "abc123", "GATEWAY_TOKEN": "gw-secret", "XMTP_ENV": "dev"}
CONFIG_STEPS = ["serviceCreate", "volumeCreate", "serviceDomainCreate", "serviceInstanceLimitsUpdate"]


@pytest.fixture
def fake(rsps) -> FakeRailway:
    return FakeRailway(API, tokens=["tok-a"], workspace_id="ws-1").install(rsps)


def make_provider(clock: FakeClock, **overrides) -> RailwayProvider:
    client = RailwayClient(API, ["tok-a"], rps=1000.0, create_interval_s=30.0, timeout_s=5.0, max_retries=2, sleep=clock.sleep, clock=clock)
    options = dict(
        client=client, workspace_id="ws-1", environment_name="staging", image=IMAGE, url_template="https://{domain}",
        page_size=50, vcpus=2.0, memory_gb=4.0, registry_username="ghcr-bot", registry_password="ghcr-secret",
    )
    return RailwayProvider(**{**options, **overrides})


@pytest.fixture
def provider(clock) -> RailwayProvider:
    return make_provider(clock)


def operations(fake: FakeRailway) -> list[str]:
    return [field for field, _, _ in fake.log]


def variables_of(fake: FakeRailway, field: str) -> dict:
    (found,) = [v for f, v, _ in fake.log if f == field]
    return found


# --- create ---------------------------------------------------------------------------------------
def test_it_creates_an_instance_with_everything_in_place_before_the_first_deploy(provider, fake, rsps):
    ref = provider.create(instance_id="abc123", variables=VARIABLES)

    assert operations(fake) == ["projectCreate", *CONFIG_STEPS, "serviceInstanceUpdate", "serviceInstanceDeployV2"]
    for call in rsps.calls:  # the outgoing requests themselves
        assert call.request.method == "POST" and call.request.url == API
        assert call.request.headers["Authorization"] == "Bearer tok-a"
    assert [json.loads(c.request.body)["operationName"] for c in rsps.calls] == [
        "ProjectCreate", "ServiceCreate", "VolumeCreate", "ServiceDomainCreate", "ServiceInstanceLimitsUpdate",
        "ServiceInstanceUpdate", "ServiceInstanceDeploy",
    ]
    assert variables_of(fake, "projectCreate") == {
        "input": {"name": "convos-agent-abc123", "workspaceId": "ws-1", "defaultEnvironmentName": "staging"}
    }
    service_input = variables_of(fake, "serviceCreate")["input"]
    assert service_input["variables"] == VARIABLES and "source" not in service_input  # nothing to boot yet
    assert variables_of(fake, "volumeCreate")["input"]["mountPath"] == "/data"
    assert variables_of(fake, "serviceInstanceLimitsUpdate")["input"] == {
        "serviceId": ref.railway_service_id, "environmentId": ref.railway_environment_id, "vCPUs": 2.0, "memoryGB": 4.0,
    }
    assert variables_of(fake, "serviceInstanceUpdate") == {
        "serviceId": ref.railway_service_id,
        "environmentId": ref.railway_environment_id,
        "input": {
            "source": {"image": IMAGE},  # no startCommand: the image's own CMD runs
            "registryCredentials": {"username": "ghcr-bot", "password": "ghcr-secret"},
        },
    }

    project = fake.projects[ref.railway_project_id]
    assert project["name"] == "convos-agent-abc123" and project["environments"] == {ref.railway_environment_id: "staging"}
    service = fake.service_of(ref.railway_project_id)
    (first_deploy,) = service["deployments"]  # exactly one boot, and it saw everything
    assert first_deploy["variables"] == VARIABLES
    assert first_deploy["volumes"] == ["/data"] and first_deploy["limits"] == {"vCPUs": 2.0, "memoryGB": 4.0}
    assert first_deploy["source"] == {"image": IMAGE} and first_deploy["startCommand"] is None
    assert ref.url == f"https://{service['domains'][0]}"
    assert ref.railway_service_id == service["id"] and ref.image_tag == IMAGE
    assert ref.provider_state["deployment_id"] == first_deploy["id"]


def test_it_a_configured_start_command_overrides_the_images_own(clock, fake):
    make_provider(clock, start_command="python -m runtime --verbose").create(instance_id="abc123", variables=VARIABLES)
    assert variables_of(fake, "serviceInstanceUpdate")["input"]["startCommand"] == "python -m runtime --verbose"
    (deploy,) = fake.service_of(next(iter(fake.projects)))["deployments"]
    assert deploy["startCommand"] == "python -m runtime --verbose"


def test_it_leaves_out_registry_credentials_without_ghcr_settings(clock, fake):
    make_provider(clock, registry_username="", registry_password="").create(instance_id="abc123", variables=VARIABLES)
    assert "registryCredentials" not in variables_of(fake, "serviceInstanceUpdate")["input"]


def test_it_renames_the_default_environment_when_railway_ignores_the_name(provider, rsps):
    fake = FakeRailway(API, workspace_id="ws-1", honor_default_environment_name=False).install(rsps)
    ref = provider.create(instance_id="abc123", variables=VARIABLES)
    assert operations(fake)[:2] == ["projectCreate", "environmentRename"]
    assert fake.projects[ref.railway_project_id]["environments"] == {ref.railway_environment_id: "staging"}


def test_it_deletes_the_project_when_volume_create_fails(provider, fake):
    fake.fail("volumeCreate")
    with pytest.raises(ProviderError) as failed:
        provider.create(instance_id="abc123", variables=VARIABLES)
    assert "volumeCreate failed" in failed.value.message
    assert fake.calls["projectDelete"] == 1 and fake.projects == {}
    assert fake.calls["serviceInstanceUpdate"] == 0 and fake.calls["serviceInstanceDeployV2"] == 0


def test_it_deletes_the_project_when_the_first_deploy_keeps_failing(provider, fake):
    fake.fail("serviceInstanceDeployV2", times=3, status=503)
    with pytest.raises(ProviderError) as failed:
        provider.create(instance_id="abc123", variables=VARIABLES)
    assert failed.value.permanent is False
    assert fake.calls["serviceInstanceDeployV2"] == 3 and fake.projects == {}


def test_it_finds_and_deletes_a_project_whose_create_answer_was_lost(provider, fake):
    fake.seed_project(name="convos-agent-other")
    fake.fail("projectCreate", status=500, after_apply=True)
    with pytest.raises(ProviderError):
        provider.create(instance_id="abc123", variables=VARIABLES)
    assert fake.calls["projectCreate"] == 1  # never retried blindly: that would make two projects
    assert fake.calls["projectDelete"] == 1
    assert [p["name"] for p in fake.projects.values()] == ["convos-agent-other"]


def test_it_reports_a_project_it_could_not_delete(provider, fake):
    fake.fail("serviceCreate")
    fake.fail("projectDelete", times=3, status=503)
    with pytest.raises(ProviderError) as failed:
        provider.create(instance_id="abc123", variables=VARIABLES)
    (project_id,) = fake.projects
    assert project_id in failed.value.message and "left behind" in failed.value.message


# --- destroy ---------------------------------------------------------------------------------------
def test_it_destroys_the_project(provider, fake):
    ref = provider.create(instance_id="abc123", variables=VARIABLES)
    provider.destroy(ref)
    assert variables_of(fake, "projectDelete") == {"id": ref.railway_project_id}
    assert fake.projects == {}


def test_it_treats_a_missing_project_as_destroyed(provider, fake):
    provider.destroy(InfraRef(instance_id="gone", railway_project_id="no-such-project"))
    assert fake.calls["projectDelete"] == 1
    provider.destroy(InfraRef(instance_id="never-created"))  # no project id: nothing to call
    assert fake.calls["projectDelete"] == 1


def test_it_retries_project_delete_through_server_errors(provider, fake):
    ref = provider.create(instance_id="abc123", variables=VARIABLES)
    fake.fail("projectDelete", times=2, status=502)
    provider.destroy(ref)
    assert fake.calls["projectDelete"] == 3 and fake.projects == {}


# --- deploy states ---------------------------------------------------------------------------------
def _ref(fake: FakeRailway, project: dict, instance_id: str) -> InfraRef:
    service = fake.service_of(project["id"])
    return InfraRef(
        instance_id=instance_id, url="https://stale", railway_project_id=project["id"],
        railway_service_id=service["id"], railway_environment_id=service["environmentId"],
    )


def test_it_reads_a_fleet_of_500_in_one_paged_query(provider, fake):
    projects = [fake.seed_project() for _ in range(500)]
    fake.seed_project(workspace_id="ws-other")  # another workspace is never listed
    fake.set_status(projects[7]["id"], "CRASHED")
    fake.set_status(projects[499]["id"], "SLEEPING")
    refs = [_ref(fake, p, f"i{n}") for n, p in enumerate(projects)]

    states = provider.deploy_states(refs)

    assert fake.calls["projects"] == math.ceil(500 / 50) == 10
    assert set(fake.calls) == {"projects"}
    pages = [v for f, v, _ in fake.log if f == "projects"]
    assert pages[0] == {"workspaceId": "ws-1", "first": 50, "after": None}
    assert all(p["after"] for p in pages[1:])
    assert states["i7"].deploy_status == "CRASHED" and states["i499"].deploy_status == "SLEEPING"
    assert {states[f"i{n}"].deploy_status for n in range(500) if n not in (7, 499)} == {"SUCCESS"}
    domain = fake.service_of(projects[3]["id"])["domains"][0]
    assert states["i3"].url == f"https://{domain}"


def test_it_reports_removed_for_a_project_missing_from_the_complete_listing(provider, fake):
    projects = [fake.seed_project() for _ in range(120)]
    refs = [_ref(fake, projects[0], "alive"), InfraRef(instance_id="gone", url="https://gone", railway_project_id="deleted-project")]
    states = provider.deploy_states(refs)
    assert fake.calls["projects"] == 3  # the whole workspace had to be read to be sure
    assert states["alive"].deploy_status == "SUCCESS"
    assert states["gone"].deploy_status == "REMOVED" and states["gone"].url == "https://gone"


def test_it_refuses_to_call_a_whole_fleet_removed(provider, fake):
    fake.seed_project(workspace_id="ws-1")
    refs = [InfraRef(instance_id=f"i{n}", railway_project_id=f"elsewhere-{n}") for n in range(3)]
    with pytest.raises(ProviderError) as failed:
        provider.deploy_states(refs)  # e.g. RAILWAY_WORKSPACE_ID now names another workspace
    assert "RAILWAY_WORKSPACE_ID" in failed.value.message


def test_it_stops_paging_once_every_project_is_found(provider, fake):
    projects = [fake.seed_project() for _ in range(200)]
    states = provider.deploy_states([_ref(fake, projects[10], "early")])
    assert fake.calls["projects"] == 1 and states["early"].deploy_status == "SUCCESS"


def test_it_makes_no_call_without_railway_projects(provider, fake):
    assert provider.deploy_states([]) == {}
    states = provider.deploy_states([InfraRef(instance_id="x", url="https://x")])
    assert states["x"].deploy_status is None and fake.calls["projects"] == 0


# --- redeploy and variables ---------------------------------------------------------------------------
def test_it_redeploys_with_a_new_deployment_of_the_image(provider, fake):
    ref = provider.create(instance_id="abc123", variables=VARIABLES)
    new_ref = provider.redeploy(ref)
    assert fake.log[-1][0] == "serviceInstanceDeployV2"
    assert fake.log[-1][1] == {"serviceId": ref.railway_service_id, "environmentId": ref.railway_environment_id}
    deployments = fake.service_of(ref.railway_project_id)["deployments"]
    assert len(deployments) == 2 and new_ref.provider_state["deployment_id"] == deployments[-1]["id"]


def test_it_refuses_to_touch_an_instance_without_railway_ids(provider, fake):
    with pytest.raises(ProviderError) as failed:
        provider.redeploy(InfraRef(instance_id="x"))
    assert failed.value.permanent is True and not fake.calls


# --- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tokens", "workspace", "missing"),
    [([], "ws-1", "RAILWAY_API_TOKENS"), (["tok"], "", "RAILWAY_WORKSPACE_ID")],
)
def test_it_needs_tokens_and_a_workspace(settings, tokens, workspace, missing):
    settings.RAILWAY_API_TOKENS = tokens
    settings.RAILWAY_WORKSPACE_ID = workspace
    with pytest.raises(ProviderError) as failed:
        get_provider("railway")
    assert failed.value.permanent is True and missing in failed.value.message


def test_it_builds_from_settings_sharing_one_client_per_process(settings):
    settings.RAILWAY_API_TOKENS = ["tok-a", "tok-b"]
    settings.RAILWAY_WORKSPACE_ID = "ws-1"
    settings.RAILWAY_ENVIRONMENT_NAME = "staging"
    first, second = get_provider("railway"), get_provider("railway")
    assert isinstance(first, RailwayProvider) and first.name == "railway"
    assert first.client is second.client  # one rate limiter and projectCreate spacer per process
    assert first.workspace_id == "ws-1" and first.environment_name == "staging" and first.page_size == settings.RAILWAY_PROJECTS_PAGE_SIZE


# --- through the services layer ---------------------------------------------------------------------
@pytest.mark.django_db(databases=["default", "services"])
def test_it_serves_the_services_layer_create_status_and_destroy(settings, rsps):
    import re
    import uuid

    from services_app import services
    from services_app.models import InstanceInfra

    api = f"https://railway-{uuid.uuid4().hex[:8]}.test/graphql/v2"  # a fresh process-wide client
    settings.INFRA_PROVIDER = "railway"
    settings.RAILWAY_API_URL = api
    settings.RAILWAY_API_TOKENS = ["tok-a"]
    settings.RAILWAY_WORKSPACE_ID = "ws-1"
    settings.RAILWAY_ENVIRONMENT_NAME = "staging"
    fake = FakeRailway(api, tokens=["tok-a"], workspace_id="ws-1").install(rsps)
    rsps.add(responses.GET, re.compile(r"https://.*\.up\.railway\.app/pool/health"), json={"ready": True, "version": "t", "runtime": "openclaw"})

    created = services.instance_create(instance_id="rw0001")
    infra = InstanceInfra.objects.using("services").get(instance_id="rw0001")
    assert infra.provider == "railway" and created["url"] == infra.url
    service = fake.service_of(infra.railway_project_id)
    assert infra.railway_service_id == service["id"]
    assert service["deployments"][0]["variables"]["INSTANCE_ID"] == "rw0001"

    statuses = services.status_batch(instance_ids=["rw0001"])
    assert statuses["rw0001"]["status"] == "healthy" and statuses["rw0001"]["deployStatus"] == "SUCCESS"
    assert services.instance_destroy(instance_id="rw0001")["ok"] is True
    assert fake.projects == {} and not InstanceInfra.objects.using("services").filter(instance_id="rw0001").exists()
