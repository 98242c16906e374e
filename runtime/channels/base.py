"""The channel interface the runtime's state and agent speak to."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from runtime.agent import Incoming


class ChannelError(Exception):
    """The channel could not do what was asked (the CLI failed, timed out, answered nonsense)."""


@dataclass(frozen=True)
class Bound:
    """A conversation the agent is in (or asked to join)."""

    conversation_id: str | None  # None while a join waits for the owner's acceptance
    invite_url: str | None
    status: str  # "created", "joined" or "pending_acceptance"
    extra: dict = field(default_factory=dict)  # channel-specific facts kept with the binding

    @property
    def joined(self) -> bool:
        return self.status == "joined"


class Channel(Protocol):
    name: str

    def ready(self) -> tuple[bool, str]:
        """Whether the channel can serve now, and why not."""

    def create(self, *, name: str, profile_name: str) -> Bound:
        """A new conversation the agent owns: its id and invite URL."""

    def join(self, *, invite_url: str, profile_name: str, profile_image: str | None, metadata: dict[str, str]) -> Bound:
        """Join from an invite: joined, or pending the owner's acceptance."""

    def check_join(self, binding: dict) -> Bound:
        """For a pending join: has the owner accepted by now?"""

    def start(self, conversation_id: str, on_message: Callable[[Incoming], None]) -> None:
        """Begin receiving the conversation's messages (each passed to `on_message`)."""

    def listening(self) -> bool:
        """Whether messages of the bound conversation reach the agent right now."""

    def send(self, conversation_id: str, text: str, *, reply_to: str | None = None) -> None:
        """Send a message as the agent."""

    def inbox_id(self) -> str | None:
        """The agent's inbox id on this channel, once it has one."""

    def own_ids(self) -> set[str]:
        """The agent's own sender ids (its messages echoed back are not answered)."""

    def stop(self) -> None:
        """Stop receiving (process exit, reset)."""

    def wipe(self) -> None:
        """Forget the agent's identity and conversations (factory reset)."""
