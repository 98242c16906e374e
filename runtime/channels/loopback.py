"""A channel with no network: the runtime keeps the conversation itself, and a person talks to
the agent through the runtime's HTTP API (`POST /agent/messages`, bearer gateway token) or,
through the pool, `manage.py chat INSTANCE_ID`.

Its invite URLs have the Convos format but open nothing in Convos: /pool/health says
`"channel": "loopback"`. A join can be made to wait for acceptance (RUNTIME_JOIN_PENDING_SECONDS)
so the pool's pending path can be exercised locally.
"""
from __future__ import annotations

import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from runtime.agent import Incoming
from runtime.channels.base import Bound, ChannelError
from runtime.files import atomic_write_json, read_json

logger = logging.getLogger(__name__)

AGENT_SENDER = "agent"
_INBOX_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class LoopbackChannel:
    name = "loopback"

    def __init__(self, *, invite_host: str, data_dir: Path | None = None, join_pending_seconds: float = 0.0,
                 clock: Callable[[], float] = time.time, **_) -> None:
        self._invite_host = invite_host
        self._join_pending_seconds = join_pending_seconds
        self._clock = clock
        self._on_message: Callable[[Incoming], None] | None = None
        self._conversation: str | None = None
        self._captured = threading.local()
        self._identity_path = data_dir / "convos" / "identity.json" if data_dir else None
        self._inbox_id: str | None = None

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def create(self, *, name: str, profile_name: str) -> Bound:
        return Bound(secrets.token_hex(16), f"https://{self._invite_host}/v2?i={secrets.token_urlsafe(16)}", "created")

    def join(self, *, invite_url: str, profile_name: str, profile_image: str | None, metadata: dict[str, str]) -> Bound:
        if self._join_pending_seconds > 0:
            until = self._clock() + self._join_pending_seconds
            return Bound(None, invite_url, "pending_acceptance", extra={"pendingUntil": until})
        return Bound(secrets.token_hex(16), invite_url, "joined")

    def check_join(self, binding: dict) -> Bound:
        until = binding.get("pendingUntil")
        if isinstance(until, (int, float)) and self._clock() < until:
            return Bound(None, binding.get("inviteUrl"), "pending_acceptance", extra={"pendingUntil": until})
        return Bound(secrets.token_hex(16), binding.get("inviteUrl"), "joined")

    def start(self, conversation_id: str, on_message: Callable[[Incoming], None]) -> None:
        self._conversation, self._on_message = conversation_id, on_message

    def listening(self) -> bool:
        return self._on_message is not None

    def send(self, conversation_id: str, text: str, *, reply_to: str | None = None) -> None:
        captured = getattr(self._captured, "replies", None)
        if captured is not None:
            captured.append(text)

    def inbox_id(self) -> str | None:
        """An inbox id in XMTP's format, made once and kept on the volume across resets (there is
        no network identity behind it)."""
        if self._inbox_id is None and self._identity_path is not None:
            try:
                stored = read_json(self._identity_path)
            except (ValueError, OSError):
                logger.warning("identity.json is unreadable; generating a new inbox id")
                stored = None
            if isinstance(stored, dict) and _INBOX_ID_RE.match(str(stored.get("inboxId", ""))):
                self._inbox_id = str(stored["inboxId"])
            else:
                self._inbox_id = secrets.token_hex(32)
                atomic_write_json(self._identity_path, {"inboxId": self._inbox_id, "createdAt": self._clock()})
                logger.info("generated inbox id %s", self._inbox_id)
        return self._inbox_id

    def own_ids(self) -> set[str]:
        return {AGENT_SENDER}

    def stop(self) -> None:
        self._conversation, self._on_message = None, None

    def wipe(self) -> None:
        self.stop()

    def deliver(self, text: str, *, sender_name: str = "you") -> list[str]:
        """A person's message: the agent's turn runs now, and its replies are returned."""
        if self._on_message is None or self._conversation is None:
            raise ChannelError("the agent is not in a conversation yet (claim it first)")
        self._captured.replies = []
        try:
            self._on_message(Incoming(id=uuid.uuid4().hex, sender_id=f"person:{sender_name}", sender_name=sender_name, text=text))
            return list(self._captured.replies)
        finally:
            self._captured.replies = None
