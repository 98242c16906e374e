"""Each bounded context lives on its own database, and only there."""
from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connections, router

from convos.db_router import AppDatabaseRouter
from pool_app.models import Instance, InstanceEvent
from services_app.models import InstanceInfra, InstanceService
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES

EXPECTED = {
    Instance: "pool",
    InstanceEvent: "pool",
    InstanceInfra: "services",
    InstanceService: "services",
    AgentTemplate: "templates",
}


def _tables(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        return set(connections[alias].introspection.table_names(cursor))


@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.parametrize("model,alias", EXPECTED.items(), ids=lambda v: getattr(v, "__name__", v))
def test_it_routes_each_model_to_its_own_alias_and_creates_its_table_only_there(model, alias):
    assert router.db_for_read(model) == alias
    assert router.db_for_write(model) == alias
    table = model._meta.db_table
    for other in ALL_DATABASES:
        assert (table in _tables(other)) == (other == alias), f"{table} on {other}"


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_writes_and_reads_each_model_on_its_alias():
    instance = Instance.objects.create(agent_name="a")
    InstanceEvent.objects.create(instance_id=instance.pk, to_status="starting", actor="cli")
    infra = InstanceInfra.objects.create(instance_id=instance.pk, provider="local", secret_nonce="n", instance_services_token_hash="h")
    InstanceService.objects.create(instance=infra, tool_id="wallet", resource_id="0xabc")
    template = AgentTemplate.objects.create(agent_name="t")

    assert instance._state.db == "pool"
    assert infra._state.db == "services"
    assert template._state.db == "templates"
    assert Instance.objects.using("pool").filter(pk=instance.pk).exists()
    assert InstanceService.objects.using("services").filter(instance=infra).count() == 1
    assert AgentTemplate.objects.using("templates").filter(pk=template.pk).exists()
    # Nothing leaked onto another alias: the raw tables elsewhere do not even exist.
    assert "instances" not in _tables("services")
    assert "agent_templates" not in _tables("pool")


def test_it_refuses_relations_across_databases():
    r = AppDatabaseRouter()
    assert r.allow_relation(Instance(), InstanceEvent()) is True
    assert r.allow_relation(Instance(), InstanceInfra()) is False
    assert r.allow_relation(InstanceInfra(), AgentTemplate()) is False


def test_it_keeps_django_apps_on_default():
    r = AppDatabaseRouter()
    for label in ("auth", "admin", "sessions", "contenttypes"):
        model = next(iter(apps.get_app_config(label).get_models()))
        assert r.db_for_write(model) == "default"
        assert r.allow_migrate("pool", label) is False
        assert r.allow_migrate("default", label) is True
