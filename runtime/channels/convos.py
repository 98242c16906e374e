"""The Convos channel: the official Convos CLI as child processes (reference 1.1).

- claim without an invite: `conversations create --name <agent> --profile-name <agent> --json`;
  the client gets the CLI's invite URL;
- claim with an invite: `conversations join <url> ... --timeout N --json`; `joined`, or (the
  CLI's `timeout` / `request_sent`) pending the owner's acceptance, which is then checked with
  `conversations list --sync --json` (a home holds one agent, so a conversation there is its);
- the bound conversation: one `agent serve <id> --json` (see convos_serve), whose `message`
  events go to the agent and whose stdin takes the agent's `send` commands.

The CLI's home (`CONVOS_HOME`, its XMTP identity and database) is `<data>/convos/cli` on the
instance's volume, so a redeploy keeps the agent's identity and conversation; a reset deletes
it, and the next claim gets a new identity. It is a directory of its own: the runtime's
`<data>/convos/identity.json` in the CLI's home would be read as the CLI's identity and crash it.

Catch-up: events marked `catchup` are history and are not answered. Messages that arrived while
no serve was running (a redeploy, a crash) are not delivered by the next serve, so after a
(re)start the channel reads them with `conversation messages --sent-after <last seen>` and
hands over the ones the agent has not seen; the agent's history drops ids it already answered.
"""
from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runtime.agent import Incoming
from runtime.channels.base import Bound, ChannelError
from runtime.channels.convos_cli import ConvosCLI
from runtime.channels.convos_serve import RestartPolicy, ServeSupervisor
from runtime.files import atomic_write_json, read_json

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 90.0
# Text-like messages are answered; reactions, attachments and group updates are not.
ANSWERED_TYPES = {"text", "markdown", "reply"}
_PROBE_RETRY_S = 30.0
_SEND_WAIT_S = 15.0
_BACKFILL_LIMIT = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ConvosChannel:
    name = "convos"

    def __init__(self, *, data_dir: Path, convos_bin: str = "convos", xmtp_env: str = "dev", join_wait_seconds: float = 20.0,
                 base_env: Mapping[str, str] | None = None, restart_policy: RestartPolicy = RestartPolicy(), **_) -> None:
        self.home = data_dir / "convos" / "cli"
        self._cursor_path = data_dir / "convos" / "cursor.json"
        self.cli = ConvosCLI(binary=convos_bin, home=self.home, xmtp_env=xmtp_env, base_env=base_env)
        self._join_wait = max(0, int(join_wait_seconds))
        self._restart_policy = restart_policy
        self._inbox_id: str | None = None
        self._serve: ServeSupervisor | None = None
        self._on_message: Callable[[Incoming], None] | None = None
        self._inbox: queue.Queue[Incoming | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._probe_lock = threading.Lock()
        self._probe: tuple[bool, str, float] | None = None

    # -- readiness ---------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        serve = self._serve
        if serve is not None and serve.failed:
            return False, "`convos agent serve` keeps exiting; the agent is not listening (redeploy or reset the instance)"
        with self._probe_lock:
            if self._probe is None or (not self._probe[0] and time.monotonic() - self._probe[2] > _PROBE_RETRY_S):
                ok, why = self.cli.probe()
                if not ok:
                    logger.error("convos CLI probe failed: %s", why)
                self._probe = (ok, why, time.monotonic())
            return self._probe[0], self._probe[1]

    # -- binding -----------------------------------------------------------------

    def create(self, *, name: str, profile_name: str) -> Bound:
        answer = self.cli.run_json("conversations", "create", "--name", name, "--profile-name", profile_name,
                                   timeout=COMMAND_TIMEOUT_S)
        conversation_id = _field(answer, "conversationId")
        invite = answer.get("invite") if isinstance(answer.get("invite"), dict) else {}
        if not invite.get("url"):
            raise ChannelError("`convos conversations create` answered without an invite URL")
        self._inbox_id = answer.get("inboxId") or self._inbox_id
        return Bound(conversation_id, invite["url"], "created", extra=self._identity_facts(answer))

    def join(self, *, invite_url: str, profile_name: str, profile_image: str | None, metadata: dict[str, str]) -> Bound:
        args = ["conversations", "join", invite_url, "--profile-name", profile_name, "--timeout", str(self._join_wait)]
        if profile_image:
            args += ["--profile-image", profile_image]
        if metadata:
            args += ["--metadata", *(f"{key}={value}" for key, value in metadata.items())]
        answer = self.cli.run_json(*args, timeout=self._join_wait + COMMAND_TIMEOUT_S)
        if not isinstance(answer, dict):
            raise ChannelError("`convos conversations join` answered something other than an object")
        self._inbox_id = answer.get("inboxId") or self._inbox_id
        status = answer.get("status")
        if status == "joined":
            return Bound(_field(answer, "conversationId"), invite_url, "joined", extra=self._identity_facts(answer))
        if status in ("timeout", "request_sent"):
            return Bound(None, invite_url, "pending_acceptance", extra=self._identity_facts(answer))
        raise ChannelError(f"`convos conversations join` answered an unknown status {status!r}")

    def check_join(self, binding: dict) -> Bound:
        answer = self.cli.run_json("conversations", "list", "--sync", timeout=COMMAND_TIMEOUT_S)
        # No conversations is an object ({message, count: 0}), not an empty list.
        rows = [row for row in answer if isinstance(row, dict) and row.get("isActive", True)] if isinstance(answer, list) else []
        if not rows:
            return Bound(None, binding.get("inviteUrl"), "pending_acceptance")
        newest = max(rows, key=lambda row: str(row.get("createdAt") or ""))
        return Bound(_field(newest, "conversationId"), binding.get("inviteUrl"), "joined")

    def _identity_facts(self, answer: dict) -> dict[str, Any]:
        return {key: answer[key] for key in ("inboxId", "identityId", "address") if answer.get(key)}

    # -- the conversation ------------------------------------------------------

    def start(self, conversation_id: str, on_message: Callable[[Incoming], None]) -> None:
        self.stop()
        self._on_message = on_message
        self._inbox = queue.Queue()
        self._worker = threading.Thread(target=self._work, args=(self._inbox,), name="convos-agent-turns", daemon=True)
        self._worker.start()
        self._serve = ServeSupervisor(self.cli, conversation_id, self._on_event, self._restart_policy)
        self._serve.start()

    def listening(self) -> bool:
        serve = self._serve
        return serve is not None and serve.ready

    def send(self, conversation_id: str, text: str, *, reply_to: str | None = None) -> None:
        serve = self._serve
        if serve is None or serve.conversation_id != conversation_id:
            raise ChannelError("the agent is not serving that conversation")
        if not serve.wait_ready(_SEND_WAIT_S):  # it may be restarting
            raise ChannelError("`agent serve` did not come back in time to send the reply")
        command = {"type": "send", "text": text}
        if reply_to:
            command["replyTo"] = reply_to
        serve.command(command)

    def inbox_id(self) -> str | None:
        if self._inbox_id is None:
            try:
                identity = read_json(self.home / "identity.json")  # the CLI's: {id, walletKey, ..., inboxId}
            except (ValueError, OSError):
                identity = None
            if isinstance(identity, dict) and isinstance(identity.get("inboxId"), str):
                self._inbox_id = identity["inboxId"]
        return self._inbox_id

    def own_ids(self) -> set[str]:
        return {self._inbox_id} if self._inbox_id else set()

    def stop(self) -> None:
        serve, self._serve = self._serve, None
        if serve is not None:
            serve.stop()
        if self._worker is not None:
            self._inbox.put(None)
            self._worker = None

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        self._cursor_path.unlink(missing_ok=True)
        self._inbox_id = None
        if self.home.exists():
            raise OSError("could not remove the convos CLI's home")

    # -- events ------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "ready":
            self._inbox_id = event.get("inboxId") or self._inbox_id
            self._backfill(event.get("conversationId") or (self._serve.conversation_id if self._serve else ""))
        elif kind == "message":
            self._take(event, catchup=bool(event.get("catchup", False)))  # live messages carry no catchup key
        elif kind == "error":
            logger.warning("convos: %s", str(event.get("message", ""))[:300])

    def _take(self, message: dict[str, Any], *, catchup: bool) -> None:
        sender = str(message.get("senderInboxId") or "")
        if sender and sender == self._inbox_id:
            return
        self._advance_cursor(message.get("sentAt"))
        content_type = message.get("contentType")
        type_id = content_type.get("typeId") if isinstance(content_type, dict) else content_type
        content = message.get("content")
        if type_id not in ANSWERED_TYPES or not isinstance(content, str) or not content.strip() or not message.get("id"):
            return
        profile = message.get("senderProfile") if isinstance(message.get("senderProfile"), dict) else {}
        self._inbox.put(Incoming(id=str(message["id"]), sender_id=sender, sender_name=profile.get("name") or sender[:8] or "someone",
                                 text=content, catchup=catchup))

    def _work(self, inbox: queue.Queue[Incoming | None]) -> None:
        # Agent turns run here, one at a time, so the serve's stdout keeps being read meanwhile.
        while (message := inbox.get()) is not None:
            on_message = self._on_message
            if on_message is not None:
                try:
                    on_message(message)
                except Exception:  # noqa: BLE001
                    logger.exception("the agent's turn failed")

    def _backfill(self, conversation_id: str) -> None:
        """Messages sent while no serve was listening: a restarted serve does not deliver them."""
        since = self._cursor()
        if since is None or not conversation_id:
            return
        try:
            rows = self.cli.run_json("conversation", "messages", conversation_id, "--sync", "--direction", "ascending",
                                     "--sent-after", str(since), "--limit", str(_BACKFILL_LIMIT), timeout=COMMAND_TIMEOUT_S)
        except ChannelError as exc:
            logger.warning("could not read the messages missed while restarting: %s", exc)
            return
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict):
                self._take(row, catchup=False)

    # -- the cursor: the newest message seen, kept on the volume ---------------------

    def _cursor(self) -> int | None:
        try:
            data = read_json(self._cursor_path)
        except ValueError:
            return None
        value = data.get("sentAtNs") if isinstance(data, dict) else None
        return value if isinstance(value, int) else None

    def _advance_cursor(self, sent_at: Any) -> None:
        ns = _iso_to_ns(sent_at)
        if ns is None:
            return
        current = self._cursor()
        if current is None or ns > current:
            atomic_write_json(self._cursor_path, {"sentAtNs": ns})


def _field(answer: Any, name: str) -> str:
    value = answer.get(name) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        raise ChannelError(f"the convos CLI answered without {name}")
    return value


def _iso_to_ns(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH  # integer arithmetic: a float timestamp can be a microsecond off
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
