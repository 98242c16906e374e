"""Issue 14's promise end to end, over HTTP on the local pool (real `python -m runtime`
processes, the pool behind Django's live server, claims made with `requests`): an instance bound
to a conversation and then marked crashed never reaches another client with that conversation,
and no claim answers 502 because of it."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings

from pool_app.models import Instance, InstanceStatus as S
from pool_app.services import instance_destroy, pool_tick
from services_app import services
from tests.conftest import ALL_DATABASES, wait_until

# Claims go through the live server's thread and connections: it sees only committed rows.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]


def _claim(live_server, name: str) -> requests.Response:
    return requests.post(f"{live_server.url}/api/pool/claim", json={"agentName": name, "instructions": "Hello."},
                         headers={"Authorization": f"Bearer {django_settings.POOL_API_KEY}"}, timeout=60)


def test_it_a_bound_crashed_instance_never_reaches_another_client_with_its_conversation(local_instances: Path, settings, live_server):
    settings.POOL_MIN_IDLE = 3
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() == 3, timeout=60, interval=0.2, message="3 idle")
    recovered_dirty, legacy_row = Instance.objects.filter(status=S.IDLE).order_by("created_at")[:2]
    old_conversations = set()
    for instance in (recovered_dirty, legacy_row):
        # Bound to a conversation (a claim that failed half-way, or one the pool lost track of)...
        old_conversations.add(services.instance_configure(instance_id=instance.pk, agent_name="Alice's", instructions="Secret plans.")["conversationId"])
    # ...then crashed: as a failed claim's unclean reset leaves it, and as a row from before the
    # fix would be (nothing saying it must be reset).
    Instance.objects.filter(pk=recovered_dirty.pk).update(status=S.CRASHED, needs_reset=True)
    Instance.objects.filter(pk=legacy_row.pk).update(status=S.CRASHED, needs_reset=False)

    answers = []
    for round_ in range(4):
        pool_tick()
        for n in range(2):
            response = _claim(live_server, f"Bob {round_}.{n}")
            assert response.status_code != 502, response.text
            if response.status_code == 200:
                answers.append(response.json())
        wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() >= 2, timeout=60, interval=0.2,
                   message="refilled")

    assert len(answers) >= 6
    for answer in answers:
        assert answer["conversationId"] not in old_conversations
        seen = services.instance_convos_status(instance_id=answer["instanceId"])
        assert seen["conversationId"] == answer["conversationId"]  # the client's own, not Alice's
    # The one a claim could not trust was reset (a fresh conversation if it was handed out again);
    # the legacy row, seen bound while idle, was taken out.
    assert Instance.objects.get(pk=legacy_row.pk).status in (S.TAINTED, S.DESTROYING, S.DELETED)
    for instance in Instance.objects.exclude(status=S.DELETED):
        instance_destroy(instance_id=instance.pk, actor="cli", reason="test teardown")
