"""The admin dashboard: every page answers, pool settings are saved through the service that logs
who changed what, and destroying instances asks first."""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from django.contrib import admin

# Admin URLs carry primary keys quoted ("_" is its escape character: tpl_22... would unquote to tpl"...).
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from pool_app.config import pool_config, pool_settings_update
from pool_app.models import (
    ClaimRequest,
    Instance,
    InstanceEvent,
    InstanceStatus,
    PoolSettings,
    PoolSettingsChange,
    PoolState,
)
from pool_app.services.operations import pool_replenish
from services_app.models import InstanceInfra, InstanceService
from services_app.providers.local import list_runtime_processes
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES

SETTINGS_URL = reverse("admin:pool_app_poolsettings_change", args=[1])
INSTANCES_URL = reverse("admin:pool_app_instance_changelist")


@pytest.fixture
def operator(operator_login):
    return operator_login("ops-alice")


def _messages(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def _settings_form(**values) -> dict:
    """The pool settings change form as a browser posts it: empty overrides, paused unticked."""
    data = {"min_idle": "", "max_total": "", "stuck_timeout_ms": "", "create_concurrency": "", "_save": "Save"}
    for field, value in values.items():
        if field == "paused":
            if value:
                data["paused"] = "on"
        else:
            data[field] = str(value)
    return data


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_answers_the_changelist_and_change_page_of_every_registered_model(operator: Client):
    instance = Instance.objects.create(status=InstanceStatus.IDLE, agent_name="Row")
    InstanceEvent.objects.create(instance_id=instance.pk, from_status="starting", to_status="idle", actor="tick", reason="healthy")
    pool_settings_update(changed_by="seed", min_idle=2)
    PoolState.objects.create(pk=1, last_tick_report={"steps": {"observe": {"checked": 1}}})
    ClaimRequest.objects.create(owner_key="operator", idempotency_key="k1", body_hash="0" * 64, instance_id=instance.pk)
    infra = InstanceInfra.objects.create(instance_id=instance.pk, provider="local", secret_nonce="n", instance_services_token_hash="h")
    InstanceService.objects.create(instance=infra, tool_id="email", resource_id="inbox-1")
    AgentTemplate.objects.create(agent_name="Template")

    registered = {m._meta.label for m in admin.site._registry}
    expected = {
        "pool_app.Instance", "pool_app.InstanceEvent", "pool_app.PoolSettings", "pool_app.PoolSettingsChange",
        "pool_app.PoolState", "pool_app.ClaimRequest", "services_app.InstanceInfra", "services_app.InstanceService",
        "templates_app.AgentTemplate",
    }
    assert expected <= registered
    for model in admin.site._registry:
        opts = model._meta
        response = operator.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), follow=True)
        assert response.status_code == 200, f"{opts.label} changelist: {response.status_code}"
        row = model._default_manager.first()
        if row is not None:
            response = operator.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(row.pk)]))
            assert response.status_code == 200, f"{opts.label} change page: {response.status_code}"
    assert operator.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_opens_the_single_pool_settings_row_from_the_changelist_creating_it(operator: Client):
    assert not PoolSettings.objects.exists()
    response = operator.get(reverse("admin:pool_app_poolsettings_changelist"))
    assert response.status_code == 302 and response["Location"] == SETTINGS_URL
    assert PoolSettings.objects.count() == 1
    assert PoolSettingsChange.objects.count() == 0  # an empty row changes nothing, so logs nothing

    assert operator.get(reverse("admin:pool_app_poolsettings_add")).status_code == 403
    assert operator.get(reverse("admin:pool_app_poolsettings_delete", args=[1])).status_code == 403
    page = operator.get(SETTINGS_URL)
    assert page.status_code == 200
    assert b"Delete" not in page.content.split(b'id="pool-operations"')[0].split(b'id="poolsettings_form"')[1]


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_shows_the_environment_default_of_each_setting(operator: Client, settings):
    settings.POOL_MIN_IDLE = 4
    settings.POOL_MAX_TOTAL = 17
    settings.POOL_STUCK_TIMEOUT_MS = 123_456
    settings.POOL_CREATE_CONCURRENCY = 6
    operator.get(reverse("admin:pool_app_poolsettings_changelist"))
    page = operator.get(SETTINGS_URL).content.decode()
    for text in ("POOL_MIN_IDLE = 4", "POOL_MAX_TOTAL = 17", "POOL_STUCK_TIMEOUT_MS = 123456", "POOL_CREATE_CONCURRENCY = 6"):
        assert text in page


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_saves_pool_settings_through_pool_settings_update_and_logs_the_user(operator: Client, settings):
    settings.POOL_MIN_IDLE = 3
    pool_settings_update(changed_by="cli:someone", max_total=40)
    assert pool_config().min_idle == 3

    with mock.patch("pool_app.admin.pool_settings_update", wraps=pool_settings_update) as update:
        response = operator.post(SETTINGS_URL, _settings_form(min_idle=7, max_total=40, paused=True))
    assert response.status_code == 302, response.content.decode()[:2000]
    # Only what the form changed is passed on: max_total was already 40.
    update.assert_called_once_with(changed_by="ops-alice", min_idle=7, paused=True)

    config = pool_config()
    assert config.min_idle == 7 and config.max_total == 40 and config.paused is True
    logged = {(c.field, c.old_value, c.new_value, c.changed_by) for c in PoolSettingsChange.objects.all()}
    assert logged == {
        ("max_total", "", "40", "cli:someone"),
        ("min_idle", "", "7", "ops-alice"),
        ("paused", "False", "True", "ops-alice"),
    }

    # Emptying a field clears the override: back to the environment, and logged too.
    operator.post(SETTINGS_URL, _settings_form(max_total=40))
    assert pool_config().min_idle == 3 and pool_config().paused is False
    assert PoolSettingsChange.objects.filter(field="min_idle", old_value="7", new_value="", changed_by="ops-alice").exists()
    page = operator.get(SETTINGS_URL).content.decode()
    assert "ops-alice" in page  # the recent changes are shown on the page


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_refuses_invalid_pool_settings_and_creates_the_row_on_the_first_valid_save(operator: Client):
    assert not PoolSettings.objects.exists()
    response = operator.post(SETTINGS_URL, _settings_form(min_idle=-1))
    assert response.status_code == 200  # the form again, with its error
    assert response.context["adminform"].form.errors["min_idle"]
    assert PoolSettingsChange.objects.count() == 0 and not PoolSettings.objects.exists()

    assert operator.post(SETTINGS_URL, _settings_form(min_idle=2)).status_code == 302
    assert PoolSettings.objects.get().min_idle == 2 and pool_config().min_idle == 2
    assert list(PoolSettingsChange.objects.values_list("field", "new_value", "changed_by")) == [("min_idle", "2", "ops-alice")]


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_keeps_the_read_only_pages_read_only(operator: Client):
    PoolState.objects.create(pk=1)
    ClaimRequest.objects.create(owner_key="operator", idempotency_key="k1", body_hash="0" * 64)
    change = pool_settings_update(changed_by="seed", min_idle=1)[0]
    for name, pk in (("poolstate", 1), ("claimrequest", ClaimRequest.objects.get().pk), ("poolsettingschange", change.pk)):
        assert operator.get(reverse(f"admin:pool_app_{name}_add")).status_code == 403
        assert operator.get(reverse(f"admin:pool_app_{name}_delete", args=[pk])).status_code == 403
        assert operator.post(reverse(f"admin:pool_app_{name}_change", args=[pk]), {}).status_code == 403
    assert PoolState.objects.count() == 1 and ClaimRequest.objects.count() == 1


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_lets_the_protected_flag_be_edited_but_not_the_row_deleted(operator: Client):
    instance = Instance.objects.create(status=InstanceStatus.IDLE)
    response = operator.post(reverse("admin:pool_app_instance_change", args=[instance.pk]), {"protected": "on", "_save": "Save"})
    assert response.status_code == 302
    instance.refresh_from_db()
    assert instance.protected is True and instance.status == InstanceStatus.IDLE

    # Deleting a row would orphan its infra: only the Destroy action (which tears it down) exists.
    assert operator.get(reverse("admin:pool_app_instance_delete", args=[instance.pk])).status_code == 403
    actions = operator.get(INSTANCES_URL).context["action_form"].fields["action"].choices
    names = [name for name, _ in actions]
    assert "delete_selected" not in names
    assert {"destroy_selected", "redeploy_selected", "recheck_selected"} <= set(names)


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_needs_a_staff_login_for_the_pool_operations(operator: Client):
    url = reverse("admin:pool_app_poolsettings_operation", args=["replenish"])
    response = Client().post(url, {"replenish-count": "1"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Instance.objects.count() == 0


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_rejects_an_invalid_pool_operation_form(operator: Client):
    url = reverse("admin:pool_app_poolsettings_operation", args=["replenish"])
    response = operator.post(url, {"replenish-count": "0"})
    assert response.status_code == 302 and response["Location"] == SETTINGS_URL
    assert [level for level, _ in _messages(response)] == ["error"]
    assert Instance.objects.count() == 0


@pytest.mark.e2e
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.usefixtures("pool_work_inline")
def test_it_asks_for_confirmation_before_destroying(operator: Client, local_instances: Path):
    [instance_id] = pool_replenish(count=1, actor="cli").instance_ids
    assert len(list_runtime_processes(local_instances)) == 1
    selection = {"action": "destroy_selected", "_selected_action": [instance_id], "index": "0"}

    confirm = operator.post(INSTANCES_URL, selection)
    assert confirm.status_code == 200
    assert [t.name for t in confirm.templates][0] == "admin/pool_app/instance/confirm_destroy.html"
    page = confirm.content.decode()
    assert instance_id in page and 'name="post" value="yes"' in page
    assert Instance.objects.get(pk=instance_id).status == InstanceStatus.STARTING
    assert len(list_runtime_processes(local_instances)) == 1

    # The confirmation page's own form: no "index", post=yes.
    response = operator.post(INSTANCES_URL, {"action": "destroy_selected", "_selected_action": [instance_id], "post": "yes"})
    assert response.status_code == 302
    assert Instance.objects.get(pk=instance_id).status == InstanceStatus.DELETED
    assert list_runtime_processes(local_instances) == []
    event = InstanceEvent.objects.filter(instance_id=instance_id).first()
    assert (event.to_status, event.actor, event.reason) == ("deleted", "admin", "destroyed by operator")
    assert ("success", f"destroy: 1 instance(s): {instance_id}") in _messages(response)

