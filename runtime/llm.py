"""The LLM, through OpenRouter's OpenAI-compatible chat completions API.

A small client over `requests` rather than an agent harness: the agent needs one request shape
(messages plus function tools, answered by a message that may ask for tool calls), and owning
those twenty lines keeps the image small and every request testable with `responses`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://openrouter.ai/api/v1"
# Used when neither the claim (its template's model) nor OPENCLAW_PRIMARY_MODEL names one.
DEFAULT_MODEL = "openai/gpt-4o-mini"
TIMEOUT_S = 60.0


class LLMError(Exception):
    """The model could not answer (network, HTTP error, or an answer of the wrong shape)."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class Reply:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)

    def as_message(self) -> dict[str, Any]:
        """The assistant message to put back into the conversation before the tool results."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in self.tool_calls
            ]
        return message


class ChatClient:
    def __init__(self, *, api_key: str, api_url: str = DEFAULT_API_URL, timeout: float = TIMEOUT_S,
                 session: requests.Session | None = None) -> None:
        self._api_key = api_key
        self._url = api_url.rstrip("/") + "/chat/completions"
        self._timeout = timeout
        self._session = session or requests.Session()

    def complete(self, *, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> Reply:
        body: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            body["tools"] = tools
        try:
            response = self._session.post(self._url, json=body, timeout=self._timeout,
                                          headers={"Authorization": f"Bearer {self._api_key}", "X-Title": "Convos agent"})
        except requests.RequestException as exc:
            raise LLMError(f"the model could not be reached: {exc.__class__.__name__}") from exc
        if response.status_code >= 400:
            raise LLMError(f"the model answered HTTP {response.status_code}: {_error_text(response)}")
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError("the model's answer had no message") from exc
        calls = [
            ToolCall(id=str(c.get("id") or f"call_{i}"), name=str(c["function"]["name"]), arguments=str(c["function"].get("arguments") or "{}"))
            for i, c in enumerate(message.get("tool_calls") or [])
            if isinstance(c, dict) and isinstance(c.get("function"), dict) and c["function"].get("name")
        ]
        return Reply(content=str(message.get("content") or ""), tool_calls=calls)


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:200]
    if isinstance(error, dict):
        return str(error.get("message") or error)[:200]
    return str(error)[:200]
