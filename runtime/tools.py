"""The tools the agent's model may call, built each turn from the credentials the instance holds
right now (variables it booted with, plus what a claim or a self-provision delivered since).

Each tool is a function-calling schema plus a handler; a tool whose credentials are missing is
simply not offered, except `request_capability`, which asks services for one the agent lacks.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

logger = logging.getLogger(__name__)

AGENTMAIL_API_URL = "https://api.agentmail.to/v0"
TELNYX_API_URL = "https://api.telnyx.com/v2"
TIMEOUT_S = 30.0
# What an agent may ask services for (services decides whether its claim allows it).
REQUESTABLE = {"email": "an email inbox", "sms": "a phone number for SMS", "crypto": "a Bankr crypto account"}


class ToolError(Exception):
    """A tool could not do what was asked; the message is safe to show the model."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], Any]

    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _call(method: str, url: str, *, token: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> Any:
    try:
        response = requests.request(method, url, json=body, params=params, timeout=TIMEOUT_S, allow_redirects=False,
                                    headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        raise ToolError(f"the service could not be reached ({exc.__class__.__name__})") from exc
    if response.status_code >= 400:
        try:
            payload = response.json()
            detail = payload.get("error") or payload.get("message") or payload.get("errors") or ""
        except ValueError:
            detail = ""
        if isinstance(detail, (dict, list)):
            detail = json.dumps(detail)[:200]
        raise ToolError(f"the service answered HTTP {response.status_code}{': ' + str(detail)[:200] if detail else ''}")
    try:
        return response.json()
    except ValueError:
        return {}


def available_tools(credentials: Mapping[str, str], *, on_provisioned: Callable[[], None] | None = None) -> list[Tool]:
    """The tools these credentials allow, in a stable order."""
    tools: list[Tool] = []
    proxy = _proxy(credentials)
    agentmail = credentials.get("AGENTMAIL_API_URL") or AGENTMAIL_API_URL
    if credentials.get("AGENTMAIL_INBOX_ID") and (credentials.get("AGENTMAIL_API_KEY") or proxy):
        inbox = credentials["AGENTMAIL_INBOX_ID"]
        # The inbox-scoped key when the instance holds one, else the pool's provider proxy.
        # The proxy takes AgentMail's own paths under /email (and refuses any inbox but this one).
        key, mail_url = ((credentials["AGENTMAIL_API_KEY"], f"{agentmail}/inboxes/{inbox}") if credentials.get("AGENTMAIL_API_KEY")
                         else (proxy[1], f"{proxy[0]}/email/inboxes/{inbox}"))

        def send_email(args: dict[str, Any]) -> Any:
            answer = _call("POST", f"{mail_url}/messages/send", token=key,
                           body={"to": [str(args["to"])], "subject": str(args.get("subject") or ""), "text": str(args["text"])})
            return {"sent": True, "messageId": answer.get("message_id")}

        def read_email(args: dict[str, Any]) -> Any:
            limit = max(1, min(int(args.get("limit") or 5), 20))
            answer = _call("GET", f"{mail_url}/messages", token=key, params={"limit": limit})
            return [{"from": m.get("from"), "subject": m.get("subject"), "preview": m.get("preview") or m.get("text"),
                     "at": m.get("timestamp") or m.get("created_at")} for m in answer.get("messages") or []]

        tools += [
            Tool("send_email", f"Send an email from your inbox {inbox}.",
                 _object({"to": {"type": "string"}, "subject": {"type": "string"}, "text": {"type": "string"}}, ["to", "text"]), send_email),
            Tool("read_email", f"Read the latest emails received by your inbox {inbox}.",
                 _object({"limit": {"type": "integer", "minimum": 1, "maximum": 20}}, []), read_email),
        ]
    if credentials.get("TELNYX_PHONE_NUMBER") and (credentials.get("TELNYX_API_KEY") or proxy):
        number = credentials["TELNYX_PHONE_NUMBER"]
        profile = credentials.get("TELNYX_MESSAGING_PROFILE_ID")
        # A user's own key goes to Telnyx directly; a pool number goes through the proxy, which
        # holds the account key and sets `from` and the messaging profile itself.
        direct = bool(credentials.get("TELNYX_API_KEY"))
        key, sms_url = ((credentials["TELNYX_API_KEY"], f"{credentials.get('TELNYX_API_URL') or TELNYX_API_URL}/messages")
                        if direct else (proxy[1], f"{proxy[0]}/sms/send"))

        def send_sms(args: dict[str, Any]) -> Any:
            body = {"from": number, "to": str(args["to"]), "text": str(args["text"])}
            if profile and direct:
                body["messaging_profile_id"] = profile
            answer = _call("POST", sms_url, token=key, body=body)
            return {"sent": True, "messageId": (answer.get("data") or {}).get("id")}

        tools.append(Tool("send_sms", f"Send an SMS from your phone number {number}.",
                          _object({"to": {"type": "string", "description": "E.164, e.g. +15551234567"}, "text": {"type": "string"}},
                                  ["to", "text"]), send_sms))
    if credentials.get("WALLET_ADDRESS"):
        address = credentials["WALLET_ADDRESS"]
        tools.append(Tool("wallet_address", "Show your crypto wallet's public address (never its key).", _object({}, []),
                          lambda args: {"address": address}))
    services_url, instance_id, token = (credentials.get("SERVICES_URL"), credentials.get("INSTANCE_ID"),
                                        credentials.get("INSTANCE_SERVICES_TOKEN"))
    missing = [t for t in REQUESTABLE if not _holds(t, credentials)]
    if services_url and instance_id and token and missing:

        def request_capability(args: dict[str, Any]) -> Any:
            tool_id = str(args.get("capability") or "")
            if tool_id not in REQUESTABLE:
                raise ToolError(f"unknown capability {tool_id!r}")
            _call("POST", f"{services_url.rstrip('/')}/provision/{instance_id}/{tool_id}", token=token, body={})
            if on_provisioned:
                on_provisioned()  # services delivered the credentials meanwhile: reload them
            return {"granted": tool_id, "note": "the new tool is available from now on"}

        tools.append(Tool("request_capability", "Ask for a capability you do not have yet: " +
                          ", ".join(f"{k} ({v})" for k, v in REQUESTABLE.items() if k in missing) + ". It may be refused.",
                          _object({"capability": {"type": "string", "enum": missing}}, ["capability"]), request_capability))
    return tools


def _proxy(credentials: Mapping[str, str]) -> tuple[str, str] | None:
    """(base URL, token) of the pool's provider proxy, when the instance knows both."""
    pool_url, token = credentials.get("POOL_URL"), credentials.get("INSTANCE_SERVICES_TOKEN")
    return (f"{pool_url.rstrip('/')}/api/proxy", token) if pool_url and token else None


def _holds(tool_id: str, credentials: Mapping[str, str]) -> bool:
    return {"email": bool(credentials.get("AGENTMAIL_INBOX_ID")), "sms": bool(credentials.get("TELNYX_PHONE_NUMBER")),
            "crypto": bool(credentials.get("BANKR_API_KEY"))}[tool_id]


def run_tool(tools: list[Tool], name: str, arguments: str) -> str:
    """Run one tool call; the answer (or the error) goes back to the model as text."""
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        return json.dumps({"error": f"no tool named {name}"})
    try:
        args = json.loads(arguments or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments must be an object")
        return json.dumps(tool.run(args))[:8000]
    except ToolError as exc:
        logger.warning("tool %s failed: %s", name, exc)
        return json.dumps({"error": str(exc)})
    except (ValueError, KeyError, TypeError) as exc:
        return json.dumps({"error": f"bad arguments: {exc}"})
