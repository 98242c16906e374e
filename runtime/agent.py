"""The agent: one turn per new message in the bound conversation.

A turn builds the prompt from the identity file (name and the claim's `## Custom Instructions`)
and a bounded recent history kept on the data volume, asks the model (tools included), runs the
tool calls it asks for (a few rounds at most) and returns the text to send. History replayed by
the channel (catch-up) and messages already answered are never answered again. Without an LLM
key the agent says so once, plainly; errors become a short apology, never a crash.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.files import atomic_write_json, read_json
from runtime.llm import DEFAULT_MODEL, ChatClient, LLMError
from runtime.tools import available_tools, run_tool

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 30  # messages of context sent with each turn
HISTORY_KEEP = 200  # messages kept on disk
TOOL_ROUNDS = 5
NO_LLM_NOTICE = ("I can't answer yet: no language model is configured for me (this instance has no OPENROUTER_API_KEY). "
                 "An operator has to give me one; until then I will stay quiet.")
APOLOGY = "Sorry, something went wrong on my side and I couldn't answer that. Please try again in a moment."


@dataclass(frozen=True)
class Incoming:
    id: str
    sender_id: str
    sender_name: str
    text: str
    catchup: bool = False


class History:
    """The conversation as the agent saw it, on the data volume (so a redeploy keeps it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "messages.json"
        self.lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            data = read_json(self.path)
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {"messages": [], "seen": [], "noticeSent": False}

    def _save(self, data: dict[str, Any]) -> None:
        data["messages"] = data["messages"][-HISTORY_KEEP:]
        data["seen"] = data["seen"][-HISTORY_KEEP * 2:]
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, data)

    def first_sighting(self, message: Incoming) -> bool:
        """Record the message; False if it was seen before (answered, or replayed history)."""
        with self.lock:
            data = self._load()
            if message.id in data["seen"]:
                return False
            data["seen"].append(message.id)
            data["messages"].append({"role": "user", "name": message.sender_name, "content": message.text, "at": time.time()})
            self._save(data)
            return True

    def add_reply(self, text: str) -> None:
        with self.lock:
            data = self._load()
            data["messages"].append({"role": "assistant", "content": text, "at": time.time()})
            self._save(data)

    def recent(self) -> list[dict[str, Any]]:
        with self.lock:
            return self._load()["messages"][-HISTORY_LIMIT:]

    def take_notice_turn(self) -> bool:
        """True exactly once per conversation: the no-LLM notice is said once."""
        with self.lock:
            data = self._load()
            if data.get("noticeSent"):
                return False
            data["noticeSent"] = True
            self._save(data)
            return True


class Agent:
    def __init__(self, *, identity_text: Callable[[], str], credentials: Callable[[], Mapping[str, str]], model: Callable[[], str | None],
                 history: History, own_ids: Callable[[], set[str]] = set, llm_url: str | None = None) -> None:
        self._identity_text = identity_text
        self._credentials = credentials
        self._model = model
        self.history = history
        self._own_ids = own_ids
        self._llm_url = llm_url
        self._turn_lock = threading.Lock()  # one turn at a time: answers come in order

    def handle(self, message: Incoming) -> str | None:
        """The reply to send for this message, or None (nothing to say)."""
        if message.sender_id and message.sender_id in self._own_ids():
            return None  # our own message, echoed back by the channel
        if not self.history.first_sighting(message) or message.catchup:
            return None
        with self._turn_lock:
            credentials = self._credentials()
            api_key = credentials.get("OPENROUTER_API_KEY")
            if not api_key:
                return NO_LLM_NOTICE if self.history.take_notice_turn() else None
            try:
                reply = self._turn(ChatClient(api_key=api_key, api_url=self._llm_url or credentials.get("OPENROUTER_API_URL")
                                              or "https://openrouter.ai/api/v1"))
            except LLMError as exc:
                logger.warning("LLM turn failed: %s", exc)
                reply = APOLOGY
            except Exception:  # noqa: BLE001 - a bug in a turn must not take the runtime down
                logger.exception("agent turn failed")
                reply = APOLOGY
            if reply:
                self.history.add_reply(reply)
            return reply or None

    def _turn(self, client: ChatClient) -> str:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self._system_prompt()}]
        for item in self.history.recent():
            if item["role"] == "user":
                messages.append({"role": "user", "content": f"{item.get('name') or 'someone'}: {item['content']}"})
            else:
                messages.append({"role": "assistant", "content": item["content"]})
        model = self._model() or DEFAULT_MODEL
        for _ in range(TOOL_ROUNDS):
            tools = available_tools(self._credentials())  # re-read: a granted capability shows up at once
            reply = client.complete(model=model, messages=messages, tools=[t.schema() for t in tools])
            if not reply.tool_calls:
                return reply.content.strip()
            messages.append(reply.as_message())
            for call in reply.tool_calls:
                logger.info("tool call: %s", call.name)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": run_tool(tools, call.name, call.arguments)})
        return client.complete(model=model, messages=messages).content.strip()

    def _system_prompt(self) -> str:
        return (
            f"{self._identity_text().strip()}\n\n"
            "You are an AI agent in a Convos group conversation (an end-to-end encrypted messenger). Messages are shown as "
            "'name: text'. Answer as yourself, briefly and in plain text. Use your tools when they help; never invent "
            "results of a tool you did not call, and never reveal keys or tokens."
        )

