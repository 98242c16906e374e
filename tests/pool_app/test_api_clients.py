"""API clients: keys shown once and kept as hashes, revocable, rate-limited, owners recorded."""
from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from rest_framework.test import APIClient

from pool_app.models import ApiClient
from pool_app.services.api_clients import api_client_create, api_client_revoke, key_hash
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def _api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_it_a_client_key_works_is_stored_only_as_a_hash_and_can_be_revoked():
    created = api_client_create(name="Acme", owner_id="acme")
    row = ApiClient.objects.get(pk=created.client.pk)
    assert created.key.startswith("cvk_") and row.key_hash == key_hash(created.key)
    assert created.key not in str(row.__dict__)
    assert _api(created.key).get("/api/pool/status").status_code == 200
    api_client_revoke(client_id=row.pk)
    response = _api(created.key).get("/api/pool/status")
    assert response.status_code == 401 and "revoked" in response.json()["error"]


def test_it_a_client_cannot_run_operator_actions():
    key = api_client_create(name="Acme", owner_id="acme").key
    for path, body in (("/api/pool/replenish", {"count": 1}), ("/api/pool/drain", {"count": 1}), ("/api/pool/redeploy", {})):
        response = _api(key).post(path, body, format="json")
        assert response.status_code == 403 and response.json()["error"]


def test_it_the_command_prints_the_key_once():
    out = StringIO()
    call_command("create_api_client", "--name", "Acme", "--owner", "acme", "--rate-limit", "5", stdout=out)
    key = re.search(r"(cvk_\S+)", out.getvalue()).group(1)
    client = ApiClient.objects.get(key_hash=key_hash(key))
    assert (client.owner_id, client.rate_limit_per_minute) == ("acme", 5)
    call_command("revoke_api_client", str(client.pk), stdout=StringIO())
    assert _api(key).get("/api/pool/status").status_code == 401


def test_it_a_clients_rate_limit_answers_429():
    cache.clear()
    key = api_client_create(name="Slow", owner_id="slow", rate_limit_per_minute=3).key
    codes = [_api(key).get("/api/pool/status").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert _api(api_client_create(name="Free", owner_id="free").key).get("/api/pool/status").status_code == 200


def test_it_admin_creates_a_client_and_shows_its_key_once(admin_client):
    response = admin_client.post("/admin/pool_app/apiclient/add/", {"name": "Web", "owner_id": "web", "rate_limit_per_minute": ""}, follow=True)
    assert response.status_code == 200
    shown = [k for k in re.findall(r"cvk_[A-Za-z0-9_-]+", response.content.decode()) if len(k) > 20]  # not the prefix column
    assert len(set(shown)) == 1
    assert _api(shown[0]).get("/api/pool/status").status_code == 200
    again = admin_client.get("/admin/pool_app/apiclient/").content.decode()
    assert shown[0] not in again and shown[0][:10] in again  # never shown again; its prefix identifies it
    # Finding 14.7: the key travelled in a message, which Django stores in a cookie.
    assert "no-store" in response["Cache-Control"]
    assert not any(shown[0] in value.value for value in admin_client.cookies.values())
    client = ApiClient.objects.get(owner_id="web")
    action = {"action": "revoke_selected", "_selected_action": [client.pk]}
    confirm = admin_client.post("/admin/pool_app/apiclient/", action)
    assert confirm.status_code == 200 and "Yes, revoke" in confirm.content.decode()  # nothing revoked before confirming
    assert _api(shown[0]).get("/api/pool/status").status_code == 200
    admin_client.post("/admin/pool_app/apiclient/", {**action, "post": "yes"})
    assert _api(shown[0]).get("/api/pool/status").status_code == 401


def test_it_revoking_keys_and_pushing_templates_need_the_change_permission(client):
    from django.contrib.auth.models import Permission, User

    from templates_app.models import AgentTemplate

    viewer = User.objects.create_user("viewer", password="pw-0123456789", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_apiclient", "view_agenttemplate"]))
    client.force_login(viewer)
    target = api_client_create(name="Kept", owner_id="kept")
    template = AgentTemplate.objects.create(agent_name="T", instructions="", visibility="public", tools=[])
    for url, action, pk in (("/admin/pool_app/apiclient/", "revoke_selected", target.client.pk),
                            ("/admin/templates_app/agenttemplate/", "push_to_instances", template.pk)):
        page = client.get(url).content.decode()
        assert f'value="{action}"' not in page  # not offered
        client.post(url, {"action": action, "_selected_action": [pk], "post": "yes"})
    assert _api(target.key).get("/api/pool/status").status_code == 200


def test_it_a_client_sees_counts_and_its_own_instances_but_no_fleet_wide_report():
    # Finding 14.7: clients saw every provider's last error and the tick report.
    client_view = _api(api_client_create(name="C", owner_id="c").key).get("/api/pool/status").json()
    assert set(client_view) == {"counts", "outage", "instances"}
    assert set(client_view["outage"]) == {"active", "since"}  # not the reason, which may quote a provider
    operator = APIClient()
    from django.conf import settings

    operator.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.POOL_API_KEY}")
    assert {"lastTick", "settings", "providers"} <= set(operator.get("/api/pool/status").json())


@pytest.mark.parametrize("option,value", [("--min-idle", "1001"), ("--max-total", "20001"), ("--create-concurrency", "65"),
                                          ("--stuck-timeout-ms", "1000")])
def test_it_pool_settings_are_bounded_from_every_door(option, value):
    from django.core.management.base import CommandError

    from pool_app.config import pool_config

    before = pool_config()
    with pytest.raises(CommandError, match=option.lstrip("-").replace("-", "_")):
        call_command("pool_settings", option, value, stdout=StringIO())
    assert pool_config() == before
