"""LOG_FORMAT=json: what the claim and its recovery log carries the instance's id, whichever layer
logs it (a transition, services, the instance's client), so an operator finds one instance's story
with one search."""
from __future__ import annotations

import io
import json
import logging

import pytest

from convos.log_format import JsonFormatter
from pool_app.models import Actor, Instance, InstanceStatus as S
from pool_app.services.claim import claim_spec, instance_claim
from services_app import facade
from services_app.facade import ServicesError
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def json_lines():
    """Every INFO+ line of the process, formatted as it is logged (the instance id is read then)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_it_a_failed_claim_s_lines_all_name_the_instance(json_lines, monkeypatch, settings, pool_work_inline):
    settings.POOL_MIN_IDLE = 0
    fake = FakeServices().install(monkeypatch)
    instance = Instance.objects.create(status=S.IDLE, deploy_status="healthy")
    fake.create_instance(instance.pk)

    def refusing_configure(instance_id, **kwargs):
        # A layer below the pool, which knows nothing of instance ids in its messages.
        logging.getLogger("services_app.runtime_client").warning("POST /pool/provision answered 500")
        raise ServicesError("the instance answered 500", code="runtime_failed", status_code=502)

    monkeypatch.setattr(facade, "configure", refusing_configure)
    with pytest.raises(Exception):
        instance_claim(spec=claim_spec(agent_name="agent"), actor=Actor.API)

    lines = json_lines()
    provider_line = next(line for line in lines if line["message"] == "POST /pool/provision answered 500")
    assert provider_line["instance_id"] == instance.pk
    transitions = [line for line in lines if line["message"].startswith(f"instance {instance.pk}: ")]
    assert [t["message"].split(": ", 1)[1].split(" (")[0] for t in transitions][:2] == ["idle -> claiming", "claiming -> resetting"]
    assert all(t["instance_id"] == instance.pk for t in transitions)
    assert all(line.get("instance_id") == instance.pk for line in lines if instance.pk in line["message"])
