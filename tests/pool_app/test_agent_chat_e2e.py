"""Talking to a claimed local agent, end to end: real `python -m runtime` processes on the
loopback channel, `manage.py chat`, and a local OpenAI-compatible stand-in as the model."""
from __future__ import annotations

import json
import re
import secrets
from io import StringIO
from pathlib import Path

import pytest
import requests
import responses
from django.core.management import call_command

from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import instance_destroy, pool_tick
from pool_app.services.claim import claim_spec
from pool_app.services import instance_claim
from runtime.agent import NO_LLM_NOTICE
from services_app.models import InstanceService
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES, wait_until
from tests.llm_standin import StandIn

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(databases=ALL_DATABASES)]
AGENTMAIL = "https://agentmail.test/v0"
LLM_KEY = f"test-llm-{secrets.token_hex(8)}"  # what the stand-in model is called with


def _idle(n: int) -> None:
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() >= n, timeout=60, interval=0.2, message=f"{n} idle")


def _chat(instance_id: str, text: str) -> str:
    out = StringIO()
    call_command("chat", instance_id, "--message", text, stdout=out)
    return out.getvalue()


@pytest.fixture
def standin():
    with StandIn() as server:
        yield server


def _teardown() -> None:
    for instance in Instance.objects.exclude(status=S.DELETED):
        instance_destroy(instance_id=instance.pk, actor="cli", reason="test teardown")


@pytest.mark.usefixtures("pool_work_inline")
def test_it_a_claimed_local_agent_answers_from_the_model_with_the_claims_instructions(local_instances: Path, settings, standin):
    settings.LOCAL_RUNTIME_ENV = {"OPENROUTER_API_URL": standin.url, "OPENROUTER_API_KEY": LLM_KEY}
    settings.POOL_MIN_IDLE = 1
    _idle(1)
    template = AgentTemplate.objects.create(agent_name="Tokyo guide", instructions="Only ever talk about Tokyo.", visibility="public",
                                            model={"default": "anthropic/claude-3.5-haiku", "allow_override": False}, tools=[])
    claimed = instance_claim(spec=claim_spec(template_id=template.pk), actor="cli")
    try:
        output = _chat(claimed.instance_id, "hello")
        assert "agent> [anthropic/claude-3.5-haiku] You said: hello" in output
        request = standin.requests[-1]
        assert request["model"] == "anthropic/claude-3.5-haiku"
        system = request["messages"][0]
        assert system["role"] == "system" and "Only ever talk about Tokyo." in system["content"] and "Tokyo guide" in system["content"]
        assert request["messages"][-1] == {"role": "user", "content": "operator: hello"}
        assert standin.headers[-1]["Authorization"] == f"Bearer {LLM_KEY}"
        # The second turn carries the first one as history.
        _chat(claimed.instance_id, "and again")
        assert [m["role"] for m in standin.requests[-1]["messages"]] == ["system", "user", "assistant", "user"]
        assert InstanceEvent.objects.filter(instance_id=claimed.instance_id, reason="operator sent the agent a message").count() == 2
    finally:
        settings.POOL_MIN_IDLE = 0
        _teardown()


@pytest.mark.usefixtures("pool_work_inline")
def test_it_without_an_llm_key_the_agent_says_so_once(local_instances: Path, settings):
    settings.POOL_MIN_IDLE = 1
    _idle(1)
    claimed = instance_claim(spec=claim_spec(agent_name="Keyless", instructions=""), actor="cli")
    try:
        assert f"agent> {NO_LLM_NOTICE}" in _chat(claimed.instance_id, "hello")
        assert "(no answer)" in _chat(claimed.instance_id, "hello?")  # said once, never pretends
    finally:
        settings.POOL_MIN_IDLE = 0
        _teardown()


# The agent provisions its email by calling the live server, whose thread has its own connections:
# the rows it reads and writes must be committed.
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_the_agent_asks_for_email_gets_it_for_itself_only_and_has_the_tool_next_turn(local_instances: Path, settings, standin, live_server):
    settings.LOCAL_RUNTIME_ENV = {"OPENROUTER_API_URL": standin.url, "OPENROUTER_API_KEY": LLM_KEY}
    settings.SERVICES_PUBLIC_URL = f"{live_server.url}/services/"
    settings.SELF_PROVISION_TOOLS = ["email"]
    settings.AGENTMAIL_API_URL, settings.AGENTMAIL_API_KEY = AGENTMAIL, f"test-account-{secrets.token_hex(8)}"
    settings.POOL_MIN_IDLE = 2
    _idle(2)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(re.compile(r"http://(127\.0\.0\.1|localhost):\d+/"))
        mock.add(responses.POST, f"{AGENTMAIL}/inboxes", json={"inbox_id": "agent@mail.test", "email": "agent@mail.test"})
        mock.add(responses.POST, f"{AGENTMAIL}/inboxes/agent@mail.test/api-keys", json={"api_key": f"test-scoped-{secrets.token_hex(8)}", "api_key_id": "k1"})
        mock.add(responses.GET, f"{AGENTMAIL}/inboxes/agent@mail.test/api-keys", json={"api_keys": [{"api_key_id": "k1"}]})
        mock.add(responses.DELETE, re.compile(rf"{AGENTMAIL}/inboxes/.*"), status=204)
        mine = instance_claim(spec=claim_spec(agent_name="Mailer", instructions=""), actor="cli").instance_id
        other = Instance.objects.filter(status=S.IDLE).exclude(pk=mine).first().pk
        try:
            assert "send_email" not in _tools(standin, lambda: _chat(mine, "hi"))
            answer = _chat(mine, "please get email")
            assert "Done:" in answer and "granted" in answer, answer
            held = InstanceService.objects.using("services").filter(tool_id="email", status="active")
            assert list(held.values_list("instance__instance_id", flat=True)) == [mine]
            assert {"send_email", "read_email"} <= _tools(standin, lambda: _chat(mine, "hello"))

            # Another instance's token is refused for this instance.
            other_token = json.loads((local_instances / other / "instance.env.json").read_text())["INSTANCE_SERVICES_TOKEN"]
            refused = requests.post(f"{live_server.url}/services/provision/{mine}/email", json={},
                                    headers={"Authorization": f"Bearer {other_token}"}, timeout=10)
            assert refused.status_code == 403
        finally:
            settings.POOL_MIN_IDLE = 0
            _teardown()


def _tools(standin: StandIn, turn) -> set[str]:
    before = len(standin.requests)
    turn()
    return {t["function"]["name"] for t in standin.requests[before].get("tools") or []}
