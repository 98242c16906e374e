"""The agent's LLM client and tools against the documented wire shapes, with `responses`:
OpenRouter's OpenAI-compatible chat completions, AgentMail, Telnyx, and services' self-provision."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import requests
import responses

from runtime.agent import APOLOGY, NO_LLM_NOTICE, Agent, History, Incoming
from runtime.llm import DEFAULT_MODEL, ChatClient, LLMError
from runtime.tools import available_tools, run_tool

LLM = "https://llm.test/api/v1"
AGENTMAIL = "https://agentmail.test/v0"
TELNYX = "https://telnyx.test/v2"
SERVICES = "https://pool.test/services"
POOL = "https://pool.test"


def _completion(message: dict) -> dict:
    return {"id": "gen-1", "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def _tool_call(name: str, arguments: dict, call_id: str = "call_1") -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}


# -- the chat client -----------------------------------------------------------------


@responses.activate
def test_it_the_client_posts_an_openai_compatible_request() -> None:
    key = secrets.token_hex(12)
    responses.post(f"{LLM}/chat/completions", json=_completion({"role": "assistant", "content": "hi there"}))
    tools = [{"type": "function", "function": {"name": "t", "description": "d", "parameters": {"type": "object"}}}]
    reply = ChatClient(api_key=key, api_url=LLM + "/").complete(model="m/x", messages=[{"role": "user", "content": "hi"}], tools=tools)

    assert reply.content == "hi there" and reply.tool_calls == []
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {key}"
    assert json.loads(sent.body) == {"model": "m/x", "messages": [{"role": "user", "content": "hi"}], "tools": tools}


@responses.activate
def test_it_the_client_reads_tool_calls_and_writes_them_back_as_the_assistant_message() -> None:
    responses.post(f"{LLM}/chat/completions", json=_completion(_tool_call("wallet_address", {}, "call_9")))
    reply = ChatClient(api_key="k", api_url=LLM).complete(model="m", messages=[])
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [("call_9", "wallet_address", "{}")]
    assert reply.as_message() == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "wallet_address", "arguments": "{}"}}]}


@pytest.mark.parametrize("answer, expected", [
    ({"status": 401, "json": {"error": {"message": "No auth credentials found", "code": 401}}}, "HTTP 401: No auth credentials found"),
    ({"status": 429, "body": "slow down"}, "HTTP 429: slow down"),
    ({"status": 200, "json": {"choices": []}}, "no message"),
    ({"body": requests.ConnectionError("refused")}, "could not be reached: ConnectionError"),
])
@responses.activate
def test_it_the_client_turns_every_failure_into_an_llm_error(answer: dict, expected: str) -> None:
    responses.post(f"{LLM}/chat/completions", **answer)
    with pytest.raises(LLMError, match=expected):
        ChatClient(api_key="k", api_url=LLM).complete(model="m", messages=[])


# -- the agent's turn ----------------------------------------------------------------


def _agent(tmp_path: Path, credentials: dict[str, str], model: str | None = None) -> Agent:
    return Agent(identity_text=lambda: "# Ada\n\n## Custom Instructions\nBe brief.", credentials=lambda: credentials,
                 model=lambda: model, history=History(tmp_path / "history"), own_ids=lambda: {"me"}, llm_url=LLM)


def _say(agent: Agent, text: str, **kwargs) -> str | None:
    return agent.handle(Incoming(id=secrets.token_hex(8), sender_id="person", sender_name="Sam", text=text, **kwargs))


@responses.activate
def test_it_a_tool_call_round_trip_puts_the_result_back_to_the_model(tmp_path: Path) -> None:
    responses.post(f"{LLM}/chat/completions", json=_completion(_tool_call("wallet_address", {})))
    responses.post(f"{LLM}/chat/completions", json=_completion({"role": "assistant", "content": "It is 0xabc."}))
    agent = _agent(tmp_path, {"OPENROUTER_API_KEY": "k", "WALLET_ADDRESS": "0xabc"})

    assert _say(agent, "what is your wallet?") == "It is 0xabc."
    first, second = (json.loads(call.request.body) for call in responses.calls)
    assert first["model"] == DEFAULT_MODEL  # no claim model, no OPENCLAW_PRIMARY_MODEL
    assert "Be brief." in first["messages"][0]["content"]
    assert [t["function"]["name"] for t in first["tools"]] == ["wallet_address"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "wallet_address"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"address": "0xabc"})}


@responses.activate
def test_it_an_llm_error_becomes_an_apology_and_the_agent_keeps_going(tmp_path: Path) -> None:
    responses.post(f"{LLM}/chat/completions", status=502, json={"error": {"message": "upstream down"}})
    responses.post(f"{LLM}/chat/completions", json=_completion({"role": "assistant", "content": "back"}))
    agent = _agent(tmp_path, {"OPENROUTER_API_KEY": "k"}, model="claim/model")
    assert _say(agent, "one") == APOLOGY
    assert _say(agent, "two") == "back"
    assert json.loads(responses.calls[1].request.body)["model"] == "claim/model"


def test_it_without_a_key_the_agent_says_so_once_and_never_pretends(tmp_path: Path) -> None:
    agent = _agent(tmp_path, {})
    assert _say(agent, "hello") == NO_LLM_NOTICE
    assert _say(agent, "hello again") is None


def test_it_catchup_and_own_messages_are_not_answered(tmp_path: Path) -> None:
    agent = _agent(tmp_path, {})
    assert _say(agent, "old", catchup=True) is None
    assert agent.handle(Incoming(id="x", sender_id="me", sender_name="Ada", text="my own")) is None


# -- the tools ---------------------------------------------------------------------


def _tools(**credentials: str) -> dict:
    return {t.name: t for t in available_tools(credentials)}


def test_it_a_tool_is_offered_only_with_its_credentials() -> None:
    assert _tools() == {}
    assert set(_tools(AGENTMAIL_API_KEY="k", AGENTMAIL_INBOX_ID="a@mail.test")) == {"send_email", "read_email"}
    assert set(_tools(TELNYX_API_KEY="k", TELNYX_PHONE_NUMBER="+15550001111")) == {"send_sms"}
    assert _tools(TELNYX_PHONE_NUMBER="+15550001111") == {}  # neither a key nor the proxy
    proxied = _tools(POOL_URL=POOL, INSTANCE_SERVICES_TOKEN="t", TELNYX_PHONE_NUMBER="+15550001111", AGENTMAIL_INBOX_ID="a@mail.test")
    assert set(proxied) == {"send_sms", "send_email", "read_email"}
    assert set(_tools(SERVICES_URL=SERVICES, INSTANCE_ID="i1", INSTANCE_SERVICES_TOKEN="t")) == {"request_capability"}
    held = _tools(SERVICES_URL=SERVICES, INSTANCE_ID="i1", INSTANCE_SERVICES_TOKEN="t", AGENTMAIL_API_KEY="k", AGENTMAIL_INBOX_ID="a@mail.test")
    assert held["request_capability"].parameters["properties"]["capability"]["enum"] == ["sms", "crypto"]


@responses.activate
def test_it_send_and_read_email_speak_agentmail() -> None:
    key = secrets.token_hex(12)
    responses.post(f"{AGENTMAIL}/inboxes/a@mail.test/messages/send", json={"message_id": "m1", "thread_id": "t1"})
    responses.get(f"{AGENTMAIL}/inboxes/a@mail.test/messages", json={"count": 1, "messages": [
        {"from": "b@x.test", "subject": "Hi", "preview": "hello", "timestamp": "2026-11-23T10:00:00Z"}]})
    tools = available_tools({"AGENTMAIL_API_KEY": key, "AGENTMAIL_INBOX_ID": "a@mail.test", "AGENTMAIL_API_URL": AGENTMAIL})

    assert json.loads(run_tool(tools, "send_email", json.dumps({"to": "b@x.test", "subject": "S", "text": "T"}))) == {"sent": True, "messageId": "m1"}
    send = responses.calls[0].request
    assert send.headers["Authorization"] == f"Bearer {key}"
    assert json.loads(send.body) == {"to": ["b@x.test"], "subject": "S", "text": "T"}

    assert json.loads(run_tool(tools, "read_email", json.dumps({"limit": 99}))) == [
        {"from": "b@x.test", "subject": "Hi", "preview": "hello", "at": "2026-11-23T10:00:00Z"}]
    assert responses.calls[1].request.url.endswith("/messages?limit=20")  # clamped


@responses.activate
def test_it_send_sms_speaks_telnyx_and_errors_go_back_to_the_model() -> None:
    responses.post(f"{TELNYX}/messages", json={"data": {"id": "sms-1", "record_type": "message"}})
    responses.post(f"{TELNYX}/messages", status=422, json={"errors": [{"code": "40310", "title": "Invalid 'to' address"}]})
    tools = available_tools({"TELNYX_API_KEY": "k", "TELNYX_PHONE_NUMBER": "+15550001111", "TELNYX_API_URL": TELNYX,
                             "TELNYX_MESSAGING_PROFILE_ID": "prof-1"})

    assert json.loads(run_tool(tools, "send_sms", json.dumps({"to": "+15550002222", "text": "hi"}))) == {"sent": True, "messageId": "sms-1"}
    assert json.loads(responses.calls[0].request.body) == {"from": "+15550001111", "to": "+15550002222", "text": "hi",
                                                          "messaging_profile_id": "prof-1"}
    error = json.loads(run_tool(tools, "send_sms", json.dumps({"to": "nope", "text": "hi"})))["error"]
    assert error.startswith("the service answered HTTP 422") and "Invalid 'to' address" in error
    assert json.loads(run_tool(tools, "send_sms", "not json"))["error"].startswith("bad arguments")
    assert json.loads(run_tool(tools, "no_such_tool", "{}")) == {"error": "no tool named no_such_tool"}


@responses.activate
def test_it_without_a_key_sms_and_email_go_through_the_pools_proxy_with_the_instance_token() -> None:
    token = secrets.token_hex(16)
    responses.post(f"{POOL}/api/proxy/sms/send", json={"data": {"id": "sms-2"}})
    responses.post(f"{POOL}/api/proxy/email/inboxes/a@mail.test/messages/send", json={"message_id": "m2"})
    responses.get(f"{POOL}/api/proxy/email/inboxes/a@mail.test/messages", json={"messages": []})
    tools = available_tools({"POOL_URL": POOL + "/", "INSTANCE_SERVICES_TOKEN": token, "TELNYX_PHONE_NUMBER": "+15550001111",
                             "TELNYX_MESSAGING_PROFILE_ID": "prof-1", "AGENTMAIL_INBOX_ID": "a@mail.test"})

    assert json.loads(run_tool(tools, "send_sms", json.dumps({"to": "+15550002222", "text": "hi"}))) == {"sent": True, "messageId": "sms-2"}
    # The proxy sets the messaging profile and checks `from` itself.
    assert json.loads(responses.calls[0].request.body) == {"from": "+15550001111", "to": "+15550002222", "text": "hi"}
    assert json.loads(run_tool(tools, "send_email", json.dumps({"to": "b@x.test", "text": "T"}))) == {"sent": True, "messageId": "m2"}
    assert json.loads(run_tool(tools, "read_email", "{}")) == []
    assert all(c.request.headers["Authorization"] == f"Bearer {token}" for c in responses.calls) and len(responses.calls) == 3


@responses.activate
def test_it_request_capability_calls_services_for_this_instance_with_its_token() -> None:
    token = secrets.token_hex(16)
    responses.post(f"{SERVICES}/provision/i1/email", json={"ok": True})
    responses.post(f"{SERVICES}/provision/i1/sms", status=403, json={"error": "sms is not granted to this claim"})
    reloaded = []
    tools = available_tools({"SERVICES_URL": SERVICES + "/", "INSTANCE_ID": "i1", "INSTANCE_SERVICES_TOKEN": token},
                            on_provisioned=lambda: reloaded.append(True))

    assert json.loads(run_tool(tools, "request_capability", '{"capability": "email"}'))["granted"] == "email"
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {token}" and reloaded == [True]
    refused = json.loads(run_tool(tools, "request_capability", '{"capability": "sms"}'))["error"]
    assert "403" in refused and "not granted" in refused
    assert "unknown capability" in json.loads(run_tool(tools, "request_capability", '{"capability": "root"}'))["error"]
    assert len(responses.calls) == 2


def test_it_keeps_the_model_out_of_the_profile_metadata() -> None:
    from runtime.validation import validate_provision

    # An older pool put the model into the metadata; the runtime takes it out.
    legacy = validate_provision({"agentName": "A", "instructions": "x", "metadata": {"model": "m/1", "team": "blue"}})
    assert legacy.metadata == {"team": "blue"} and legacy.model == "m/1"
    current = validate_provision({"agentName": "A", "instructions": "x", "model": "m/2"})
    assert current.metadata == {} and current.model == "m/2"
