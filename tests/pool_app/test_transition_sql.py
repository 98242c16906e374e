"""`transition` writes plain values with its own UPDATE (no Django query compiled): the row it
stores must be exactly the row Django's `.update()` stores, and an expression still goes through
Django. Conditional as ever: a row no longer in `from_status` is not touched."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app import transitions
from pool_app.transitions import transition
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

COMPARED = ("status", "agent_name", "instructions", "model", "conversation_id", "invite_url", "owner_id", "claimed_at",
            "last_error", "reset_failures", "template_id", "template_synced_at", "parent_instance_id", "source",
            "profile_image", "metadata", "needs_reset", "join_url")


def _claim_values(parent: str | None) -> dict:
    now = timezone.now() - timedelta(minutes=3)
    return dict(agent_name="Zoë 🚀", instructions="Say \"hi\" ; DROP TABLE x; --", model="", conversation_id="c-1",
                invite_url="https://convos.example/v2?i=abc", owner_id="owner-1", claimed_at=now, last_error="",
                reset_failures=0, template_id="", template_synced_at=None, parent_instance_id=parent, source="landing",
                profile_image="", metadata={"plan": "pro", "nested": "ä'\"", "empty": ""}, needs_reset=True)


def test_it_stores_exactly_what_django_s_update_stores():
    parent = Instance.objects.create(status=S.CLAIMED).pk
    mine, django_s = (Instance.objects.create(status=S.CLAIMING, join_url=f"https://convos.example/v2?i={n}").pk for n in "ab")
    values = _claim_values(parent)
    assert transition(mine, from_status=S.CLAIMING, to_status=S.CLAIMED, actor="api", reason="claimed", **values)
    Instance.objects.filter(pk=django_s, status=S.CLAIMING).update(status=S.CLAIMED, **values)
    stored = Instance.objects.values(*COMPARED).get(pk=mine)
    expected = Instance.objects.values(*COMPARED).get(pk=django_s)
    assert {k: v for k, v in stored.items() if k != "join_url"} == {k: v for k, v in expected.items() if k != "join_url"}
    assert stored["metadata"] == {"plan": "pro", "nested": "ä'\"", "empty": ""}
    assert stored["parent_instance_id"] == parent
    assert InstanceEvent.objects.filter(instance_id=mine, from_status=S.CLAIMING, to_status=S.CLAIMED).count() == 1


def test_it_writes_none_as_null_and_leaves_a_moved_row_alone():
    moved_away = Instance.objects.create(status=S.IDLE, parent_instance_id=None).pk
    assert not transition(moved_away, from_status=S.CLAIMING, to_status=S.CLAIMED, actor="api", reason="late",
                          **_claim_values(None))
    row = Instance.objects.get(pk=moved_away)
    assert row.status == S.IDLE and row.agent_name == "" and row.parent_instance_id is None
    assert not InstanceEvent.objects.filter(instance_id=moved_away).exists()


def test_it_leaves_expressions_to_django():
    instance = Instance.objects.create(status=S.IDLE, reset_failures=2, agent_name="a").pk
    assert transition(instance, from_status=S.IDLE, to_status=S.CRASHED, actor="tick", reason="crash",
                      reset_failures=F("reset_failures") + 1, agent_name=Concat(F("agent_name"), Value("b")))
    row = Instance.objects.get(pk=instance)
    assert (row.status, row.reset_failures, row.agent_name) == (S.CRASHED, 3, "ab")


def test_it_is_one_statement_on_postgresql_and_compiles_no_django_query(monkeypatch):
    if connections["pool"].vendor != "postgresql":
        pytest.skip("the single statement is PostgreSQL's path")

    class NotCompiled:
        def __init__(self, *args, **kwargs):
            raise AssertionError("plain values must not be compiled by Django's UpdateQuery")

    monkeypatch.setattr(transitions, "UpdateQuery", NotCompiled)
    instance = Instance.objects.create(status=S.CLAIMING).pk
    with CaptureQueriesContext(connections["pool"]) as queries:
        assert transition(instance, from_status=S.CLAIMING, to_status=S.CLAIMED, actor="api", reason="claimed",
                          **_claim_values(None))
    assert len(queries) == 1 and queries[0]["sql"].startswith("WITH moved AS (UPDATE")
