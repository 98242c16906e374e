"""The fake fleet as a process of its own (`manage.py fake_fleet`), shared through FAKE_FLEET_URL."""
from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from services_app import services
from services_app.providers import get_provider
from services_app.providers.base import InfraRef, ProviderError
from services_app.providers import fake_fleet_process as fleet_process
from services_app.providers.fake import FakeProvider, fake_instance



@pytest.fixture
def fleet(settings) -> Iterator[tuple[subprocess.Popen, str]]:
    process, url = fleet_process.spawn()
    settings.INFRA_PROVIDER = "fake"
    settings.FAKE_FLEET_URL = url
    settings.FAKE_HEALTH_LATENCY_MS = 0
    try:
        yield process, url
    finally:
        fleet_process.stop(process)


def _new_id() -> str:
    return f"fleet{secrets.token_hex(4)}"


def test_it_shares_one_fleet_between_provider_objects(fleet):
    _, url = fleet
    instance_id = _new_id()
    provider = get_provider()
    ref = provider.create(instance_id=instance_id, variables={"XMTP_ENV": "dev"})
    assert ref.url == f"{url}/i/{instance_id}"
    assert fake_instance(instance_id) is None  # lives in the fleet process, not in this one
    health = requests.get(f"{ref.url}/pool/health", timeout=5)
    assert health.status_code == 200 and health.json()["instanceId"] == instance_id and health.json()["xmtpEnv"] == "dev"

    other = FakeProvider.from_settings()  # what another process (a worker, the tick) builds
    assert other is not provider
    states = other.deploy_states([InfraRef(instance_id=instance_id, url=ref.url), InfraRef(instance_id="nobody")])
    assert states[instance_id].deploy_status == "SUCCESS" and states[instance_id].url == ref.url
    assert states["nobody"].deploy_status == "REMOVED"
    assert requests.get(f"{url}/fleet/instances", timeout=5).json()["instanceIds"] == [instance_id]
    assert other.redeploy(ref) == ref

    provider.destroy(ref)
    assert other.deploy_states([ref])[instance_id].deploy_status == "REMOVED"
    assert provider.deploy_states([ref])[instance_id].deploy_status == "REMOVED"
    assert requests.get(f"{ref.url}/pool/health", timeout=5).status_code == 404
    with pytest.raises(ProviderError) as gone:
        other.redeploy(ref)
    assert gone.value.permanent is True


def test_it_refuses_a_second_create_and_finds_unrecorded_ones(fleet):
    instance_id = _new_id()
    provider = FakeProvider.from_settings()
    provider.create(instance_id=instance_id, variables={})
    with pytest.raises(ProviderError) as twice:
        FakeProvider.from_settings().create(instance_id=instance_id, variables={})
    assert twice.value.permanent is True
    assert FakeProvider.from_settings().destroy_unrecorded(instance_id) is True
    assert provider.destroy_unrecorded(instance_id) is False


@pytest.mark.django_db(databases=["default", "pool", "services", "templates"])
def test_it_serves_the_services_layer_end_to_end(fleet, pool_work_inline):
    _, url = fleet
    instance_id = _new_id()
    created = services.instance_create(instance_id=instance_id)
    assert created["url"] == f"{url}/i/{instance_id}"
    assert services.status_batch(instance_ids=[instance_id])[instance_id]["status"] == "healthy"
    answer = services.instance_configure(instance_id=instance_id, agent_name="Fleet", instructions="Be quick.")
    assert answer["inviteUrl"].startswith("https://dev.convos.org/v2?i=")
    assert services.instance_convos_status(instance_id=instance_id)["clean"] is False
    assert services.instance_destroy(instance_id=instance_id)["ok"] is True
    assert requests.get(f"{url}/fleet/instances", timeout=5).json()["instanceIds"] == []


def test_it_raises_when_the_fleet_is_gone_instead_of_reporting_all_removed(fleet):
    process, _ = fleet
    instance_id = _new_id()
    provider = FakeProvider.from_settings()
    ref = provider.create(instance_id=instance_id, variables={})
    assert provider.deploy_states([ref])[instance_id].deploy_status == "SUCCESS"
    fleet_process.stop(process)
    with pytest.raises(ProviderError) as down:
        provider.deploy_states([ref])
    assert down.value.permanent is False and "unreachable" in down.value.message
    with pytest.raises(ProviderError):
        provider.create(instance_id=_new_id(), variables={})
    with pytest.raises(ProviderError):
        provider.destroy(ref)


def test_it_keeps_the_control_api_off_the_in_process_server(settings):
    settings.FAKE_FLEET_URL = ""
    instance_id = _new_id()
    provider = FakeProvider.from_settings()
    ref = provider.create(instance_id=instance_id, variables={})
    try:
        assert fake_instance(instance_id) is not None
        base = ref.url.rsplit("/i/", 1)[0]
        assert requests.get(f"{base}/fleet/instances", timeout=5).status_code == 404
        assert requests.delete(f"{base}/fleet/instances/{instance_id}", timeout=5).status_code == 404
        assert fake_instance(instance_id) is not None
    finally:
        provider.destroy(ref)


def test_it_sets_the_fleets_own_knobs_and_refuses_anything_else(fleet):
    _, url = fleet
    instance_id = _new_id()
    ref = FakeProvider.from_settings().create(instance_id=instance_id, variables={})
    assert requests.post(f"{url}/fleet/knobs", json={"FAKE_HEALTH_LATENCY_MS": 300}, timeout=5).status_code == 200
    started = time.monotonic()
    assert requests.get(f"{ref.url}/pool/health", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3  # the latency is the fleet's, set from outside
    for bad in ({"SECRET_KEY": 1}, {"FAKE_HEALTH_LATENCY_MS": "slow"}, {}):
        assert requests.post(f"{url}/fleet/knobs", json=bad, timeout=5).status_code == 400
