"""The fake infra provider (benchmarks, tests) works through the real services layer."""
from __future__ import annotations

import pytest
import requests

from pool_app.models import Instance, InstanceStatus
from pool_app.services import instance_claim, pool_tick
from pool_app.services.claim import claim_spec
from services_app import services
from services_app.models import InstanceInfra
from services_app.providers import get_provider
from services_app.providers.base import InfraRef
from services_app.providers.fake import FakeProvider

pytestmark = pytest.mark.django_db(databases=["default", "pool", "services", "templates"])


@pytest.fixture
def fake(settings, pool_work_inline) -> None:
    settings.INFRA_PROVIDER = "fake"
    settings.FAKE_HEALTH_LATENCY_MS = 0


def test_it_create_status_configure_reset_destroy_through_services(fake):
    assert isinstance(get_provider(), FakeProvider)
    created = services.instance_create(instance_id="fake0001")
    assert created["url"].endswith("/i/fake0001")
    assert InstanceInfra.objects.using("services").get(instance_id="fake0001").provider == "fake"
    health = requests.get(f"{created['url']}/pool/health", timeout=5)
    assert health.status_code == 200 and health.json()["ready"] is True and health.json()["runtime"] == "fake"

    statuses = services.status_batch(instance_ids=["fake0001", "nobody"])
    assert statuses["fake0001"] == {"status": "healthy", "deployStatus": "SUCCESS", "healthy": True, "url": created["url"]}
    assert statuses["nobody"]["status"] == "not_found"

    answer = services.instance_configure(instance_id="fake0001", agent_name="Bench", instructions="Be quick.")
    assert answer["inviteUrl"].startswith("https://dev.convos.org/v2?i=")
    assert len(answer["conversationId"]) == 32 and answer["joined"] is False and answer["status"] == "created"
    assert services.instance_convos_status(instance_id="fake0001")["clean"] is False
    with pytest.raises(services.ServicesError) as bound:
        services.instance_configure(instance_id="fake0001", agent_name="Again", instructions="")
    assert bound.value.code == "already_bound"
    assert services.instance_reset(instance_id="fake0001")["clean"] is True

    assert services.instance_destroy(instance_id="fake0001")["ok"] is True
    assert not InstanceInfra.objects.using("services").filter(instance_id="fake0001").exists()
    assert requests.get(f"{created['url']}/pool/health", timeout=5).status_code == 404


def test_it_forgotten_instance_reads_removed_and_many_share_one_server(fake):
    urls = [services.instance_create(instance_id=f"fake{i:04d}")["url"] for i in range(2, 7)]
    assert len({u.rsplit("/i/", 1)[0] for u in urls}) == 1  # one server for all of them
    FakeProvider().destroy(InfraRef(instance_id="fake0002"))  # gone at the provider, still recorded
    statuses = services.status_batch(instance_ids=[f"fake{i:04d}" for i in range(2, 7)])
    assert statuses["fake0002"]["status"] == "deploy_failed" and statuses["fake0002"]["deployStatus"] == "REMOVED"
    assert {statuses[f"fake{i:04d}"]["status"] for i in range(3, 7)} == {"healthy"}
    for i in range(2, 7):
        services.instance_destroy(instance_id=f"fake{i:04d}")


def test_it_the_pool_fills_and_claims_on_fake_instances(fake, settings):
    settings.POOL_MIN_IDLE = 3
    assert pool_tick()["steps"]["top_up"]["created"] == 3
    pool_tick()
    assert Instance.objects.filter(status=InstanceStatus.IDLE).count() == 3
    claim = instance_claim(spec=claim_spec(agent_name="Fake agent", instructions="Hi."), actor="api")
    assert claim.invite_url.startswith("https://dev.convos.org/v2?i=")
    assert Instance.objects.get(pk=claim.instance_id).status == InstanceStatus.CLAIMED
    for instance_id in InstanceInfra.objects.using("services").values_list("instance_id", flat=True):
        services.instance_destroy(instance_id=instance_id)


# The calls run on threads. This test's rows are not committed, so a thread reading the database
# would find no instance: every answer below coming back proves the threads read nothing, and the
# query count that the records are read once, here.
def test_it_asks_many_instances_for_their_conversation_in_one_call(fake, django_assert_max_num_queries):
    for instance_id in ("fakeb001", "fakeb002", "fakeb003"):
        services.instance_create(instance_id=instance_id)
    conversation = services.instance_configure(instance_id="fakeb002", agent_name="Bound", instructions="")["conversationId"]
    get_provider().destroy(InfraRef(instance_id="fakeb003"))  # recorded, but no longer answering

    with django_assert_max_num_queries(1, using="services"):
        answers = services.instance_convos_status_batch(instance_ids=["fakeb001", "fakeb002", "fakeb003", "nobody"])

    assert answers["fakeb001"]["conversationId"] is None and answers["fakeb001"]["clean"] is True
    assert answers["fakeb002"]["conversationId"] == conversation and answers["fakeb002"]["clean"] is False
    assert "error" in answers["fakeb003"] and "fakeb003" in answers["fakeb003"]["error"]
    assert answers["nobody"] == {"error": "Unknown instance nobody"}
