"""Found by the soak (bench/soak.py): an instance that answers health and resets clean but fails
every provision went back to idle as the oldest idle instance, so it was the next claim's pick,
and failed every claim. Now POOL_MAX_RESET_FAILURES such failures in a row make it dead."""
from __future__ import annotations

import pytest

from convos.errors import UpstreamFailed
from pool_app.models import Instance, InstanceStatus as S
from pool_app.services import instance_claim, pool_tick
from pool_app.services.claim import claim_spec
from services_app import services
from services_app.models import InstanceInfra
from services_app.providers.fake import fake_instance
from tests.conftest import ALL_DATABASES, wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def fake_pool(settings, pool_work_inline):
    settings.INFRA_PROVIDER = "fake"
    settings.POOL_IDLE_AUDIT_SAMPLE = 0
    settings.POOL_MAX_RESET_FAILURES = 2
    settings.POOL_MIN_IDLE = 2
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() == 2, timeout=20, interval=0.1, message="2 idle")
    settings.POOL_MIN_IDLE = 0
    yield list(Instance.objects.filter(status=S.IDLE).order_by("created_at"))
    for instance_id in InstanceInfra.objects.using("services").values_list("instance_id", flat=True):
        services.instance_destroy(instance_id=instance_id)


def _claim():
    return instance_claim(spec=claim_spec(agent_name="A", instructions="x"), actor="api")


def test_it_takes_an_instance_that_keeps_failing_its_provision_out_of_the_pool(fake_pool):
    broken, healthy = fake_pool
    fake_instance(broken.pk).provision_fail = True  # its reset stays clean
    with pytest.raises(UpstreamFailed):
        _claim()
    assert Instance.objects.get(pk=broken.pk).status == S.IDLE  # one failure may be the network's
    with pytest.raises(UpstreamFailed):
        _claim()
    assert Instance.objects.get(pk=broken.pk).status == S.DEAD  # two in a row: not offered again
    assert _claim().instance_id == healthy.pk
    pool_tick()
    assert Instance.objects.get(pk=broken.pk).status == S.DELETED


def test_it_starts_the_count_again_after_a_successful_claim(fake_pool):
    broken, _ = fake_pool
    fake_instance(broken.pk).provision_fail = True
    with pytest.raises(UpstreamFailed):
        _claim()
    fake_instance(broken.pk).provision_fail = False
    assert _claim().instance_id == broken.pk
    assert Instance.objects.get(pk=broken.pk).reset_failures == 0
