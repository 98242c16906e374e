"""Template CRUD over the REST API: who may see and change what, and what a template may say."""
from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from pool_app.models import Instance, InstanceStatus
from pool_app.services.api_clients import api_client_create
from services_app import facade
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

URL = "/api/templates"
BODY = {
    "agentName": "Concierge",
    "instructions": "Book things.",
    "model": {"default": "openrouter/model-a", "allow_override": True},
    "tools": [{"id": "email", "provisioning": "pool"}, {"id": "sms", "provisioning": "user"}],
    "visibility": "private",
}


def _client(owner: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name=owner, owner_id=owner).key}")
    return client


@pytest.fixture
def alice() -> APIClient:
    return _client("alice")


@pytest.fixture
def bob() -> APIClient:
    return _client("bob")


@pytest.fixture
def operator() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.POOL_API_KEY}")
    return client


def _create(client: APIClient, **changes) -> dict:
    response = client.post(URL, {**BODY, **changes}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _error(response) -> str:
    return response.json()["error"]


def test_it_creates_reads_replaces_patches_and_deletes_a_template(alice):
    created = _create(alice)
    assert created["id"].startswith("tpl_")
    assert {k: created[k] for k in BODY} == BODY  # model and tools come back exactly as stored
    assert created["creatorId"] == "alice" and created["createdAt"] and created["updatedAt"]
    row = AgentTemplate.objects.using("templates").get(pk=created["id"])
    assert row.model == BODY["model"] and row.tools == BODY["tools"] and row.creator_id == "alice"

    detail = f"{URL}/{created['id']}"
    assert alice.get(detail).json() == created

    patched = alice.patch(detail, {"instructions": "Book flights."}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["instructions"] == "Book flights." and patched.json()["tools"] == BODY["tools"]
    assert patched.json()["updatedAt"] >= created["updatedAt"]

    # PUT replaces: what it leaves out goes back to the defaults.
    replaced = alice.put(detail, {"agentName": "Butler", "instructions": ""}, format="json")
    assert replaced.status_code == 200, replaced.content
    body = replaced.json()
    assert (body["agentName"], body["instructions"], body["tools"], body["visibility"]) == ("Butler", "", [], "private")
    assert body["model"] == {"default": "", "allow_override": False}
    assert body["id"] == created["id"] and body["createdAt"] == created["createdAt"]

    again = alice.put(detail, alice.get(detail).json(), format="json")  # what GET gives, PUT takes (output-only keys ignored)
    assert again.status_code == 200 and again.json() == alice.get(detail).json()

    shown = alice.post(f"{detail}/visibility", {"visibility": "public"}, format="json")
    assert shown.status_code == 200 and shown.json()["visibility"] == "public"

    deleted = alice.delete(detail)
    assert deleted.status_code == 204 and not deleted.content
    assert alice.get(detail).status_code == 404
    assert not AgentTemplate.objects.using("templates").filter(pk=created["id"]).exists()


def test_it_fills_defaults_for_tools_model_and_visibility_on_create(alice):
    response = alice.post(URL, {"agentName": "Plain", "instructions": ""}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["tools"], body["visibility"], body["model"]) == ([], "private", {"default": "", "allow_override": False})


def test_it_hides_another_clients_private_template_completely(alice, bob):
    template = _create(alice)
    detail = f"{URL}/{template['id']}"
    missing = f"{URL}/tpl_does_not_exist"

    for url in (detail, missing):  # bob cannot tell a private template from no template
        assert bob.get(url).status_code == 404
        assert bob.patch(url, {"agentName": "Mine"}, format="json").status_code == 404
        assert bob.put(url, BODY, format="json").status_code == 404
        assert bob.delete(url).status_code == 404
        assert bob.post(f"{url}/visibility", {"visibility": "public"}, format="json").status_code == 404
    assert _error(bob.get(detail)) == f"No template {template['id']}"
    for odd in ("tpl%00x", "x" * 65):  # ids no row can have are simply not found (NUL must not reach PostgreSQL)
        assert bob.get(f"{URL}/{odd}").status_code == 404
        assert bob.patch(f"{URL}/{odd}", {"agentName": "Mine"}, format="json").status_code == 404

    row = AgentTemplate.objects.using("templates").get(pk=template["id"])
    assert (row.agent_name, row.visibility) == ("Concierge", "private")  # nothing changed


def test_it_lets_others_read_a_public_template_but_not_change_it(alice, bob):
    template = _create(alice, visibility="public")
    detail = f"{URL}/{template['id']}"

    assert bob.get(detail).status_code == 200 and bob.get(detail).json()["creatorId"] == "alice"
    for response in (
        bob.patch(detail, {"agentName": "Mine"}, format="json"),
        bob.put(detail, BODY, format="json"),
        bob.delete(detail),
        bob.post(f"{detail}/visibility", {"visibility": "private"}, format="json"),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["code"] == "forbidden"
    row = AgentTemplate.objects.using("templates").get(pk=template["id"])
    assert (row.agent_name, row.visibility) == ("Concierge", "public")


def test_it_lets_the_operator_see_and_change_every_template(alice, operator):
    template = _create(alice)
    detail = f"{URL}/{template['id']}"
    assert operator.get(detail).status_code == 200
    assert operator.patch(detail, {"agentName": "Checked"}, format="json").json()["agentName"] == "Checked"
    assert operator.get(detail).json()["creatorId"] == "alice"  # the creator stays
    assert operator.delete(detail).status_code == 204


def test_it_lists_public_templates_and_the_callers_own(alice, bob, operator):
    alice_private = _create(alice, agentName="A private")["id"]
    alice_public = _create(alice, agentName="A public", visibility="public")["id"]
    bob_private = _create(bob, agentName="B private")["id"]
    bob_public = _create(bob, agentName="B public", visibility="public")["id"]

    def ids(client: APIClient, query: str = "") -> set[str]:
        response = client.get(URL + query)
        assert response.status_code == 200, response.content
        return {t["id"] for t in response.json()["templates"]}

    assert ids(bob) == {alice_public, bob_private, bob_public}
    assert ids(alice) == {alice_private, alice_public, bob_public}
    assert ids(operator) == {alice_private, alice_public, bob_private, bob_public}

    assert ids(bob, "?visibility=public") == {alice_public, bob_public}
    assert ids(bob, "?visibility=private") == {bob_private}
    assert ids(bob, "?creator=alice") == {alice_public}  # alice's private one stays hidden
    assert ids(bob, "?creator=alice&visibility=private") == set()
    assert ids(operator, "?creator=alice&visibility=private") == {alice_private}

    for query in ("?visibility=secret", "?visibility=", "?creator=" + "x" * 201):
        response = bob.get(URL + query)
        assert response.status_code == 400, query
    assert _error(bob.get(URL + "?visibility=secret")).startswith("visibility:")


def test_it_needs_an_api_key(anon_api):
    assert anon_api.get(URL).status_code == 401
    assert anon_api.post(URL, BODY, format="json").status_code == 401


@pytest.mark.parametrize("changes,message", [
    ({"tools": [{"id": "email", "provisioning": "pool"}, {"id": "teleport", "provisioning": "pool"}]},
     "tools[1].id: unknown tool 'teleport'"),
    ({"tools": [{"id": "email", "provisioning": "always"}]}, "tools[0].provisioning: must be 'pool' or 'user'"),
    ({"tools": [{"id": "openrouter", "provisioning": "pool"}]}, "tools[0].id: tool 'openrouter' comes with every instance"),
    ({"tools": [{"id": "email", "provisioning": "pool"}, {"id": "email", "provisioning": "user"}]},
     "tools[1].id: duplicate tool 'email'"),
    ({"tools": [{"id": "email", "provisioning": "pool", "extra": 1}]}, "tools[0]: unexpected key(s) 'extra'"),
    ({"tools": [{"id": 7, "provisioning": "pool"}]}, "tools[0].id: must be a non-empty string"),
    ({"tools": [{"provisioning": "pool"}]}, "tools[0].id: required"),
    ({"tools": ["email"]}, "tools[0]: must be an object"),
    ({"tools": {"id": "email"}}, "tools: must be a list"),
    ({"tools": [{"id": "email", "provisioning": "pool"}] * 21}, "tools: at most 20 tools"),
    ({"model": "gpt"}, "model: must be an object"),
    ({"model": ["a"]}, "model: must be an object"),
    ({"model": {"default": "a"}}, "model: missing 'allow_override'"),
    ({"model": {"default": "a", "allow_override": True, "temperature": 1}}, "model: unexpected key(s) 'temperature'"),
    ({"model": {"default": 5, "allow_override": True}}, "model: default must be a string"),
    ({"model": {"default": "a", "allow_override": "yes"}}, "model: allow_override must be true or false"),
    ({"model": {"default": "m" * 201, "allow_override": False}}, "model: default must be at most 200 characters"),
    ({"model": {"default": "a\u0000b", "allow_override": False}}, "model: default must be printable text"),
    ({"agentName": 123}, "agentName: Must be a string."),
    ({"agentName": "a\u0000b"}, "agentName: Null characters are not allowed."),
    ({"agentName": ""}, "agentName:"),
    ({"agentName": "n" * 201}, "agentName: Ensure this field has no more than 200 characters."),
    ({"instructions": "x" * 1_000_000}, "instructions: Ensure this field has no more than 100000 characters."),
    ({"instructions": None}, "instructions:"),
    ({"visibility": "friends"}, "visibility:"),
    ({"creatorId": "bob", "agent_name": "x"}, "agent_name: unknown field"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_it_refuses_an_invalid_template_naming_the_field(alice, changes, message):
    response = alice.post(URL, {**BODY, **changes}, format="json")
    assert response.status_code == 400, response.content
    assert message in _error(response), _error(response)
    assert response.json()["code"] == "invalid"
    assert not AgentTemplate.objects.using("templates").exists()


def test_it_refuses_a_provisioning_mode_the_tool_does_not_support(alice, monkeypatch):
    registry = [
        {"toolId": "email", "name": "AgentMail", "provisioning": ["pool", "user"], "always": False, "enabled": True, "reason": ""},
        {"toolId": "fax", "name": "Fax", "provisioning": ["pool"], "always": False, "enabled": False, "reason": "FAX_KEY is not set"},
    ]
    monkeypatch.setattr(facade, "registry", lambda: registry)
    response = alice.post(URL, {**BODY, "tools": [{"id": "fax", "provisioning": "user"}]}, format="json")
    assert response.status_code == 400, response.content
    assert "tools[0].provisioning: tool 'fax' cannot be provisioned 'user' (it supports 'pool')" in _error(response)
    # A tool that is disabled here (no key for the pool's account) may still be declared.
    assert _create(alice, tools=[{"id": "fax", "provisioning": "pool"}])["tools"] == [{"id": "fax", "provisioning": "pool"}]


def test_it_refuses_an_invalid_update_and_keeps_the_template(alice):
    template = _create(alice)
    detail = f"{URL}/{template['id']}"
    response = alice.patch(detail, {"tools": [{"id": "teleport", "provisioning": "pool"}]}, format="json")
    assert response.status_code == 400 and "tools[0].id: unknown tool 'teleport'" in _error(response)
    response = alice.put(detail, {"agentName": "Only a name"}, format="json")  # PUT needs the whole template
    assert response.status_code == 400 and "instructions: This field is required." in _error(response)
    assert alice.post(f"{detail}/visibility", {"visibility": "everyone"}, format="json").status_code == 400
    assert alice.post(f"{detail}/visibility", {}, format="json").status_code == 400
    assert alice.get(detail).json() == template


@pytest.mark.parametrize("method", ["post", "put", "patch"])
@pytest.mark.parametrize("raw,content_type", [
    ("not json", "application/json"),
    ('["a list"]', "application/json"),
    ('"a string"', "application/json"),
    ("null", "application/json"),
    ("agentName=x", "application/x-www-form-urlencoded"),
])
def test_it_refuses_a_body_that_is_not_a_json_object(alice, method, raw, content_type):
    url = URL if method == "post" else f"{URL}/{_create(alice)['id']}"
    response = getattr(alice, method)(url, raw, content_type=content_type)
    assert response.status_code in (400, 415), response.content
    assert response.json()["error"]
    assert AgentTemplate.objects.using("templates").count() == (0 if method == "post" else 1)


def test_it_refuses_a_visibility_body_that_is_not_a_json_object(alice):
    template = _create(alice)
    response = alice.post(f"{URL}/{template['id']}/visibility", '["public"]', content_type="application/json")
    assert response.status_code == 400 and _error(response) == "body: Must be a JSON object"


def test_it_leaves_instances_claimed_from_a_deleted_template_alone(alice):
    template = _create(alice)
    instance = Instance.objects.using("pool").create(
        status=InstanceStatus.CLAIMED, agent_name="Concierge", owner_id="alice", template_id=template["id"],
    )
    assert alice.delete(f"{URL}/{template['id']}").status_code == 204
    kept = Instance.objects.using("pool").get(pk=instance.pk)
    assert (kept.status, kept.template_id, kept.agent_name) == (InstanceStatus.CLAIMED, template["id"], "Concierge")
