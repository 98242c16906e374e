"""The production image as a runtime kind (openclaw, hermes): what creation gives it, and services
driving it on Railway (the Railway stand-in) against a stand-in of its pool-server."""
from __future__ import annotations

import json
import re
import secrets
import uuid

import pytest
import responses

from services_app import runtime_kinds
from services_app.models import InstanceInfra
from services_app.services import (
    ServicesError, instance_configure, instance_create, instance_destroy, instance_reset, status_batch, tool_provision,
)
from services_app.services.infra import _runtime_variables
from tests.conftest import ALL_DATABASES
from tests.services_app.fake_railway import FakeRailway
from tests.services_app.production_runtime_standin import ProductionRuntimeStandin, StandinRefused
from tests.services_app.conftest import services_on_railway

OPENROUTER = "https://openrouter.test/api/v1"
IMAGE = "ghcr.io/xmtplabs/convos-managed-agent-runtime:test"
DEFAULT_MODEL = "openrouter/pool-default"
CLAIM_MODEL = "openrouter/claim-choice"


@pytest.fixture
def standin():
    with ProductionRuntimeStandin() as server:
        yield server


@pytest.fixture
def railway(settings, rsps, monkeypatch, standin) -> FakeRailway:
    """Services on Railway (its stand-in, through `responses`), every instance URL pointing at the
    pool-server stand-in (a real HTTP server: its URL passes through `responses`)."""
    api = services_on_railway(settings)
    settings.RAILWAY_RUNTIME_IMAGE = IMAGE
    settings.RAILWAY_INSTANCE_URL_TEMPLATE = standin.url  # whatever domain Railway gives, the stand-in answers
    settings.OPENCLAW_PRIMARY_MODEL = DEFAULT_MODEL
    settings.OPENROUTER_API_URL = OPENROUTER
    settings.OPENROUTER_MANAGEMENT_KEY = secrets.token_hex(16)
    settings.RUNTIME_OPENROUTER_API_KEY = ""
    monkeypatch.setattr("services_app.plugins.http.sleep", lambda s: None, raising=False)
    rsps.add_passthru(standin.url)
    rsps.add_callback(responses.POST, f"{OPENROUTER}/keys", content_type="application/json",
                      callback=lambda request: (201, {}, f'{{"key": "{secrets.token_hex(16)}", "data": {{"hash": "hash-{secrets.token_hex(4)}"}}}}'))
    rsps.add(responses.DELETE, re.compile(rf"{re.escape(OPENROUTER)}/keys/hash-\w+"), json={"deleted": True})
    return FakeRailway(api, tokens=["tok-a"], workspace_id="ws-1").install(rsps)


def first_boot_variables(fake: FakeRailway, instance_id: str) -> dict[str, str]:
    project_id = InstanceInfra.objects.get(instance_id=instance_id).railway_project_id
    return fake.service_of(project_id)["deployments"][0]["variables"]


def issued_openrouter_keys(rsps) -> list[str]:
    return [json.loads(c.response.text)["key"] for c in rsps.calls if c.request.url == f"{OPENROUTER}/keys"]


# --- end to end -------------------------------------------------------------------------------------
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.parametrize("kind", ["hermes", "openclaw"])
def test_it_services_drives_the_production_image_from_creation_to_teardown(kind, settings, railway, rsps, standin):
    settings.POOL_RUNTIME_KIND = kind
    settings.RUNTIME_OPENROUTER_API_KEY = secrets.token_hex(16)  # replaced by the instance's own key
    instance_id = uuid.uuid4().hex[:12]

    created = instance_create(instance_id=instance_id)
    assert created["url"] == standin.url
    variables = first_boot_variables(railway, instance_id)
    standin.boot(variables)  # the image starts with what the first deployment saw (it refuses less)
    assert variables["RUNTIME_TYPE"] == kind and variables["_RUNTIME_IMAGE"] == IMAGE
    assert variables["DEFAULT_AGENT_NAME"] == "Assistant" and variables["POOL_ENVIRONMENT"] == settings.XMTP_ENV
    (instance_key,) = issued_openrouter_keys(rsps)
    assert variables["OPENROUTER_API_KEY"] == instance_key  # its own key, not the pool-wide one
    assert variables.get("HERMES_MODEL") == (DEFAULT_MODEL if kind == "hermes" else None)

    # health, as the tick asks it
    assert status_batch(instance_ids=[instance_id])[instance_id]["healthy"] is True

    # claim: bound first; a hermes instance then restarts on the claim's model, which never reaches the profile
    bound = instance_configure(instance_id=instance_id, agent_name="Scout", instructions="Be brief.", model=CLAIM_MODEL,
                               metadata={"source": "test"})
    assert bound["ok"] and bound["conversationId"] == standin.binding["conversationId"]
    assert InstanceInfra.objects.get(instance_id=instance_id).runtime_kind == kind  # what its health reported
    (provision,) = standin.provisions
    assert provision["metadata"] == {"source": "test"} and CLAIM_MODEL not in str(standin.binding["metadata"])
    if kind == "hermes":
        assert standin.restarts == [{"HERMES_MODEL": CLAIM_MODEL}] and standin.model == CLAIM_MODEL
    else:
        assert standin.restarts == []  # openclaw reads no model after boot: it keeps its own

    # a template's tool: its credentials come by restart (there is no /pool/credentials)
    restarts = len(standin.restarts)
    user_key = secrets.token_hex(16)
    tool_provision(instance_id=instance_id, tool_id="crypto", user_config={"bankrApiKey": user_key})
    assert standin.restarts[restarts:] == [{"BANKR_API_KEY": user_key}] and standin.env["BANKR_API_KEY"] == user_key
    assert ("POST", "/pool/credentials") not in standin.requests

    # a template sync of name and instructions: nothing on this image can carry them
    with pytest.raises(ServicesError) as refused:
        instance_configure(instance_id=instance_id, agent_name="Scout 2", instructions="Be briefer.", update=True)
    assert refused.value.status_code == 501 and refused.value.code == "unsupported_by_runtime"
    assert kind in refused.value.message
    assert ("POST", "/pool/update") not in standin.requests

    # reset: the conversation goes (the agent's reset), the claim's variables and model by a restart
    restarts = len(standin.restarts)
    assert instance_reset(instance_id=instance_id)["clean"] is True
    expected = {"BANKR_API_KEY": ""} | ({"HERMES_MODEL": DEFAULT_MODEL} if kind == "hermes" else {})
    assert standin.restarts[restarts:] == [expected] and standin.env["BANKR_API_KEY"] == ""
    assert InstanceInfra.objects.get(instance_id=instance_id).runtime_model == ""

    project_id = InstanceInfra.objects.get(instance_id=instance_id).railway_project_id
    assert instance_destroy(instance_id=instance_id) == {"ok": True, "pendingResources": 0}
    assert project_id not in railway.projects and not InstanceInfra.objects.filter(instance_id=instance_id).exists()


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_a_second_binding_fails_after_the_pool_servers_retries_and_restarts_nothing(settings, railway, standin):
    settings.POOL_RUNTIME_KIND = "hermes"
    instance_id = uuid.uuid4().hex[:12]
    instance_create(instance_id=instance_id)
    standin.boot(first_boot_variables(railway, instance_id))
    instance_configure(instance_id=instance_id, agent_name="First", instructions="Hi")

    with pytest.raises(ServicesError) as failed:
        instance_configure(instance_id=instance_id, agent_name="Second", instructions="Hi", model=CLAIM_MODEL)
    # The agent's 409 arrives as the pool-server's 500: not recognisable as already_bound.
    assert failed.value.code == "runtime_failed" and "409" in failed.value.message
    assert standin.join_attempts == 30 and standin.restarts == []  # the bound agent kept its model
    instance_destroy(instance_id=instance_id)


# --- creation ---------------------------------------------------------------------------------------
@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.parametrize("kind", ["hermes", "openclaw"])
def test_it_creation_without_an_openrouter_key_fails_clearly_and_creates_nothing(kind, settings, railway, rsps):
    settings.POOL_RUNTIME_KIND = kind
    settings.OPENROUTER_MANAGEMENT_KEY = ""  # no per-instance key ...
    settings.RUNTIME_OPENROUTER_API_KEY = ""  # ... and no pool-wide one
    with pytest.raises(ServicesError) as failed:
        instance_create(instance_id=uuid.uuid4().hex[:12])
    assert failed.value.code == "missing_runtime_variable" and failed.value.status_code == 500
    assert "OPENROUTER_API_KEY" in failed.value.message and kind in failed.value.message
    assert sum(railway.calls.values()) == 0 and len(rsps.calls) == 0  # no infra, no tool
    assert not InstanceInfra.objects.exists()


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_a_pool_wide_openrouter_key_is_enough_without_the_openrouter_tool(settings, railway):
    settings.POOL_RUNTIME_KIND = "hermes"
    settings.OPENROUTER_MANAGEMENT_KEY = ""
    settings.RUNTIME_OPENROUTER_API_KEY = pool_key = secrets.token_hex(16)
    instance_id = uuid.uuid4().hex[:12]
    instance_create(instance_id=instance_id)
    assert first_boot_variables(railway, instance_id)["OPENROUTER_API_KEY"] == pool_key
    instance_destroy(instance_id=instance_id)


def _variables(kind: str) -> dict[str, str]:
    return _runtime_variables(instance_id="abc123", gateway_token="gw", services_token="st", kind=runtime_kinds.get(kind))


def test_it_injects_the_variables_each_kind_needs(settings):
    settings.RAILWAY_RUNTIME_IMAGE = IMAGE
    settings.XMTP_ENV = "production"
    settings.OPENCLAW_PRIMARY_MODEL = DEFAULT_MODEL
    settings.RUNTIME_OPENROUTER_API_KEY = pool_key = secrets.token_hex(16)
    settings.RUNTIME_EXA_API_KEY = exa = secrets.token_hex(16)
    settings.RUNTIME_POSTHOG_HOST = "https://posthog.test"
    settings.RUNTIME_CONVOS_API_KEY = settings.RUNTIME_POSTHOG_API_KEY = ""

    common = _variables("convos-python")
    assert common["INSTANCE_ID"] == "abc123" and common["OPENCLAW_PRIMARY_MODEL"] == DEFAULT_MODEL
    assert not {"RUNTIME_TYPE", "_RUNTIME_IMAGE", "OPENROUTER_API_KEY", "HERMES_MODEL", "EXA_API_KEY"} & set(common)

    production = {"_RUNTIME_IMAGE": IMAGE, "DEFAULT_AGENT_NAME": "Assistant", "POOL_ENVIRONMENT": "production",
                  "OPENROUTER_API_KEY": pool_key, "EXA_API_KEY": exa, "POSTHOG_HOST": "https://posthog.test"}
    openclaw, hermes = _variables("openclaw"), _variables("hermes")
    assert openclaw == {**common, **production, "RUNTIME_TYPE": "openclaw"}  # unset optional ones stay out
    assert hermes == {**common, **production, "RUNTIME_TYPE": "hermes", "HERMES_MODEL": DEFAULT_MODEL}


def test_it_the_stand_in_refuses_to_start_without_the_required_variables():
    env = {"RUNTIME_TYPE": "hermes", "_RUNTIME_IMAGE": IMAGE, "DEFAULT_AGENT_NAME": "Assistant", "POOL_ENVIRONMENT": "dev",
           "OPENROUTER_API_KEY": secrets.token_hex(16)}
    for name in env:
        with pytest.raises(StandinRefused, match=name):
            ProductionRuntimeStandin({k: v for k, v in env.items() if k != name})
    with ProductionRuntimeStandin(env) as booted:
        assert booted.runtime == "hermes"


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_the_kind_of_an_unknown_or_silent_instance_is_the_configured_one(settings, standin):
    settings.POOL_RUNTIME_KIND = "openclaw"
    infra = InstanceInfra.objects.create(instance_id="abc123", provider="railway", url=standin.url, secret_nonce="n",
                                         instance_services_token_hash="h")
    assert runtime_kinds.instance_kind(infra).name == "openclaw"  # not booted: no answer
    assert InstanceInfra.objects.get(pk="abc123").runtime_kind == ""  # asked again next time
    standin.boot({"RUNTIME_TYPE": "hermes", "_RUNTIME_IMAGE": IMAGE, "DEFAULT_AGENT_NAME": "Assistant",
                  "POOL_ENVIRONMENT": "dev", "OPENROUTER_API_KEY": secrets.token_hex(16)})
    assert runtime_kinds.instance_kind(infra).name == "hermes"
    assert InstanceInfra.objects.get(pk="abc123").runtime_kind == "hermes"
