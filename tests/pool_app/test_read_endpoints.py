"""Reading the fleet over the API: `GET /api/pool/instances` (a page at a time, `?status=`), one
instance, and `GET /api/templates` paged; an API client sees only its own instances."""
from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from pool_app.models import Instance, InstanceStatus as S
from pool_app.services.api_clients import api_client_create
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def _operator() -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {settings.POOL_API_KEY}")


def _client(owner: str) -> APIClient:
    created = api_client_create(name=owner, owner_id=owner)
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {created.key}")


def test_it_pages_the_instances_and_filters_by_status():
    idle = [Instance.objects.create(status=S.IDLE) for _ in range(3)]
    Instance.objects.create(status=S.STARTING)
    Instance.objects.create(status=S.DELETED)
    first = _operator().get("/api/pool/instances", {"limit": 2}).json()
    assert first["count"] == 4 and first["limit"] == 2 and len(first["instances"]) == 2
    rest = _operator().get("/api/pool/instances", {"limit": 2, "offset": 2}).json()
    assert len(rest["instances"]) == 2
    assert {i["id"] for i in first["instances"] + rest["instances"]} == {i.pk for i in idle} | {
        Instance.objects.get(status=S.STARTING).pk}
    only_idle = _operator().get("/api/pool/instances", {"status": "idle"}).json()
    assert only_idle["count"] == 3 and {i["status"] for i in only_idle["instances"]} == {"idle"}


@pytest.mark.parametrize("params, field", [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"offset": -1}, "offset"),
                                           ({"limit": "x"}, "limit"), ({"status": "nope"}, "status")])
def test_it_answers_400_naming_the_bad_parameter(params, field):
    response = _operator().get("/api/pool/instances", params)
    assert response.status_code == 400 and field in response.json()["error"]


def test_it_shows_a_client_only_its_own_instances():
    mine = Instance.objects.create(status=S.CLAIMED, owner_id="acme", agent_name="Mine")
    theirs = Instance.objects.create(status=S.CLAIMED, owner_id="other")
    client = _client("acme")
    listed = client.get("/api/pool/instances").json()
    assert [i["id"] for i in listed["instances"]] == [mine.pk] and listed["count"] == 1
    one = client.get(f"/api/pool/instances/{mine.pk}")
    assert one.status_code == 200 and one.json()["agentName"] == "Mine"
    assert client.get(f"/api/pool/instances/{theirs.pk}").status_code == 404
    assert client.delete(f"/api/pool/instances/{mine.pk}").status_code == 403  # reading is not destroying


def test_it_reads_one_instance_without_secrets():
    instance = Instance.objects.create(status=S.CLAIMED, agent_name="Ada", invite_url="https://dev.convos.org/v2?i=abc",
                                       template_id="tpl1", model="m/1", source="landing")
    body = _operator().get(f"/api/pool/instances/{instance.pk}").json()
    assert body["inviteUrl"] == "https://dev.convos.org/v2?i=abc" and body["templateId"] == "tpl1"
    assert body["model"] == "m/1" and body["source"] == "landing" and body["runtimeKind"] == "convos-python"
    assert body["createdAt"] and "claimedAt" in body
    assert not {"instructions", "gatewayToken", "token"} & set(body)
    assert _operator().get("/api/pool/instances/nosuchinstance").status_code == 404


def test_it_pages_the_templates():
    for n in range(3):
        response = _operator().post("/api/templates", {"agentName": f"T{n}", "instructions": "x"}, format="json")
        assert response.status_code == 201, response.content
    listed = _operator().get("/api/templates", {"limit": 2}).json()
    assert listed["count"] == 3 and len(listed["templates"]) == 2 and listed["offset"] == 0
