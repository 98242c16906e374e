"""The services HTTP API: auth (pool key, instance self-provisioning), and one contract that holds
whether the pool reaches services in process or over HTTP."""
from __future__ import annotations

import logging

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from services_app import facade, instance_secrets
from services_app.models import InstanceInfra, InstanceService
from services_app.services import ServicesError
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def fake_infra(settings):
    settings.INFRA_PROVIDER = "fake"
    settings.OPENROUTER_MANAGEMENT_KEY = ""  # only the wallet is always on here


@pytest.fixture
def known_tokens(monkeypatch) -> list[str]:
    """Capture each instance's services token as it is generated (only its hash is stored)."""
    tokens: list[str] = []
    real = instance_secrets.new_services_token

    def capture() -> str:
        tokens.append(real())
        return tokens[-1]

    monkeypatch.setattr(instance_secrets, "new_services_token", capture)
    return tokens


def _client(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_it_needs_a_valid_key_for_every_route(fake_infra):
    for client in (_client(None), _client("wrong"), _client(django_settings.POOL_API_KEY)):
        response = client.get("/services/registry")
        assert response.status_code == 401, response.content
        assert response.json()["error"]
    assert _client(django_settings.SERVICES_API_KEY).get("/services/registry").status_code == 200


def test_it_an_instance_may_provision_only_for_itself(fake_infra, known_tokens):
    facade.create_instance("selfprov0001")
    facade.create_instance("selfprov0002")
    own, other = known_tokens
    assert InstanceInfra.objects.get(instance_id="selfprov0001").instance_services_token_hash == instance_secrets.token_hash(own)

    refused = _client(own).post("/services/provision/selfprov0002/wallet", {}, format="json")
    assert refused.status_code == 403 and "only act on itself" in refused.json()["error"]
    assert _client(own).post("/services/create-instance", {"instanceId": "x"}, format="json").status_code == 403
    assert _client(own).get("/services/registry").status_code == 403

    facade.configure("selfprov0001", agent_name="Mine", instructions="", self_provision_tools=["wallet"])  # claimed, wallet granted
    allowed = _client(own).post("/services/provision/selfprov0001/wallet", {}, format="json")
    assert allowed.status_code == 200, allowed.content
    assert allowed.json()["resourceId"].startswith("0x") and "PRIVATE_WALLET_KEY" not in allowed.content.decode()
    # One live resource per tool: the wallet it was created with is the one it gets.
    assert InstanceService.objects.filter(instance_id="selfprov0001", tool_id="wallet").count() == 1

    # A destroyed instance's token stops working.
    facade.destroy("selfprov0001")
    assert _client(own).post("/services/provision/selfprov0001/wallet", {}, format="json").status_code == 401


def test_it_bad_bodies_get_400_naming_the_field(fake_infra):
    client = _client(django_settings.SERVICES_API_KEY)
    response = client.post("/services/status/batch", {"instanceIds": "not-a-list"}, format="json")
    assert response.status_code == 400 and "instanceIds" in response.json()["error"]
    response = client.post("/services/create-instance", {"instanceId": 7}, format="json")
    assert response.status_code == 400 and "instanceId" in response.json()["error"]
    assert client.post("/services/provision/nope/wallet", {}, format="json").status_code == 404
    assert client.post("/services/provision/nope/teleport", {}, format="json").status_code == 404


# Over HTTP, services answers from the live server's thread, on connections of its own: the rows
# it reads and writes must be committed.
@pytest.fixture(params=["in_process", pytest.param("http", marks=pytest.mark.django_db(databases=ALL_DATABASES, transaction=True))])
def mode(request, settings, fake_infra):
    """Run a contract both ways: SERVICES_URL unset (in process) and set (over real HTTP)."""
    if request.param == "http":
        live_server = request.getfixturevalue("live_server")
        settings.SERVICES_URL = f"{live_server.url}/services/"
    else:
        settings.SERVICES_URL = ""
    return request.param


def test_it_the_facade_contract_holds_in_process_and_over_http(mode):
    created = facade.create_instance("contract0001")
    assert created["instanceId"] == "contract0001" and created["url"].startswith("http://127.0.0.1:")
    with pytest.raises(ServicesError) as duplicate:
        facade.create_instance("contract0001")
    assert duplicate.value.code == "exists" and duplicate.value.status_code == 409

    statuses = facade.status_batch(["contract0001", "missing00001"])
    assert statuses["contract0001"]["status"] == "healthy" and statuses["contract0001"]["deployStatus"] == "SUCCESS"
    assert statuses["missing00001"]["status"] == "not_found"

    answer = facade.configure("contract0001", agent_name="Contract", instructions="Hi", model="m-1")
    assert answer["ok"] is True and answer["inviteUrl"].startswith("https://dev.convos.org/v2?i=")
    with pytest.raises(ServicesError) as bound:
        facade.configure("contract0001", agent_name="Again", instructions="Hi")
    assert bound.value.code == "already_bound"
    assert facade.convos_status("contract0001")["clean"] is False
    assert facade.reset("contract0001")["clean"] is True
    with pytest.raises(ServicesError) as unbound:  # a claim's tools go only to a bound instance
        facade.provision_tool("contract0001", "wallet")
    assert unbound.value.code == "not_bound"
    facade.configure("contract0001", agent_name="Contract", instructions="Hi")

    tools = {t["toolId"]: t for t in facade.registry()}
    assert tools["wallet"]["enabled"] is True and tools["openrouter"]["enabled"] is False and tools["openrouter"]["reason"]
    wallet = facade.provision_tool("contract0001", "wallet")
    assert facade.destroy_tool("contract0001", "wallet", wallet["resourceId"]) == {"ok": True}
    with pytest.raises(ServicesError) as unknown:
        facade.provision_tool("contract0001", "teleport")
    assert unknown.value.code == "unknown_tool"

    assert facade.redeploy("contract0001") == {"ok": True}
    assert facade.destroy("contract0001") == {"ok": True, "pendingResources": 0}
    assert facade.destroy("contract0001")["ok"] is True  # already gone is fine
    with pytest.raises(ServicesError) as gone:
        facade.configure("contract0001", agent_name="x", instructions="y")
    assert gone.value.code == "not_found"


@pytest.fixture
def emitted_logs():
    """What the configured console handler would write: records through the redaction filter."""
    import io

    from convos.log_redaction import RedactSecretsFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_it_no_provider_secret_reaches_logs_responses_or_admin(settings, emitted_logs, admin_client):
    """Provider keys the pool holds and keys it creates never appear in full anywhere."""
    import re

    import responses

    settings.INFRA_PROVIDER = "fake"
    settings.OPENROUTER_API_URL = "https://openrouter.test/api/v1"
    settings.OPENROUTER_MANAGEMENT_KEY = "sk-or-v1-fake_management_secret_0123456789"
    instance_key = "sk-or-v1-fake_instance_secret_0123456789"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+/"))
        rsps.add(responses.POST, "https://openrouter.test/api/v1/keys", status=201, json={"key": instance_key, "data": {"hash": "h1"}})
        # A provider that echoes the caller's key in its error: it must not leak through.
        rsps.add(responses.DELETE, "https://openrouter.test/api/v1/keys/h1", status=401,
                 json={"error": {"message": f"bad key {settings.OPENROUTER_MANAGEMENT_KEY}"}})
        pool = _client(settings.SERVICES_API_KEY)
        texts = [pool.post("/services/create-instance", {"instanceId": "secret000001"}, format="json").content.decode()]
        texts.append(pool.get("/services/providers").content.decode())
        texts.append(pool.delete("/services/destroy/secret000001").content.decode())
        texts.append(pool.get("/services/providers").content.decode())
    for path in ("/admin/services_app/instanceinfra/", "/admin/services_app/instanceinfra/secret000001/change/",
                 "/admin/services_app/instanceservice/", "/admin/services_app/providerstatus/"):
        page = admin_client.get(path)
        assert page.status_code in (200, 302), path
        texts.append(page.content.decode())
    texts.append(emitted_logs.getvalue())
    texts.extend(str(r.__dict__) for r in InstanceService.objects.all())
    texts.extend(str(r.__dict__) for r in InstanceInfra.objects.all())
    blob = "\n".join(texts)
    assert "h1" in blob  # the test saw the traffic it claims to check
    for secret in (settings.OPENROUTER_MANAGEMENT_KEY, instance_key, settings.SERVICES_API_KEY, settings.INSTANCE_SECRET_KEY):
        assert secret not in blob


def test_it_gives_an_instances_infra_and_resources_without_secrets_to_the_pool_only(mode, known_tokens):
    facade.create_instance("info00000001")
    [own] = known_tokens
    infra = InstanceInfra.objects.get(instance_id="info00000001")
    info = facade.instance_info("info00000001")  # in process or over GET /services/instances/<id>
    assert info["instanceId"] == "info00000001" and info["provider"] == "fake" and info["url"] == infra.url
    assert info["createdAt"] and info["tornDownAt"] is None
    [wallet] = info["resources"]
    assert wallet["toolId"] == "wallet" and wallet["resourceId"] == infra.resources.get().resource_id and wallet["status"] == "active"
    assert wallet["provisionedAt"] and wallet["destroyedAt"] is None
    blob = str(info)
    for secret in (own, infra.secret_nonce, infra.instance_services_token_hash):
        assert secret not in blob
    assert "config" not in wallet and "providerState" not in info

    # Pool only: the instance's own token may not read it.
    assert _client(own).get("/services/instances/info00000001").status_code == 403
    assert _client(django_settings.SERVICES_API_KEY).get("/services/instances/info00000001").status_code == 200
    facade.destroy("info00000001")
    with pytest.raises(ServicesError) as gone:
        facade.instance_info("info00000001")
    assert gone.value.code == "not_found" and gone.value.status_code == 404
