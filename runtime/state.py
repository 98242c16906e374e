"""The instance's claim state: identity, conversation binding, instructions.

All state lives on disk under the data directory so that a restarted process
(a redeploy, a crash, a host reboot) still knows it is claimed. The layout
mirrors what the real instance keeps on its volume:

    <data>/convos/                the channel's identity (see runtime/channels)
    <data>/convos/binding.json    the claimed conversation
    <data>/workspace/IDENTITY.md  persona + "## Custom Instructions"
    <data>/credentials/           per-claim secrets (never written here)

One lock serialises provision, reset and status: the pool may fire several
claims at one instance (retries, races between pool workers) and exactly one
may win.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime import identity_md
from runtime.channels.base import Bound, Channel, ChannelError
from runtime.config import Config
from runtime.files import atomic_write_json, atomic_write_text, dir_has_files, read_json
from runtime.validation import ProvisionRequest

logger = logging.getLogger(__name__)

STATUS_CREATED = "created"
STATUS_JOINED = "joined"
STATUS_PENDING = "pending_acceptance"


class AlreadyBoundError(Exception):
    """The instance already serves a conversation; provision is refused."""


class SimulatedProvisionFailure(Exception):
    """Raised when RUNTIME_FAIL_PROVISION is set, after the side effects."""


class CorruptBindingError(Exception):
    """binding.json exists but cannot be parsed."""


class ChannelFailed(Exception):
    """The channel (the Convos CLI) could not create or join the conversation."""


@dataclass(frozen=True)
class ProvisionResult:
    invite_url: str | None
    conversation_id: str | None
    joined: bool
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "inviteUrl": self.invite_url,
            "conversationId": self.conversation_id,
            "joined": self.joined,
            "status": self.status,
        }


class RuntimeState:
    def __init__(self, config: Config, channel: Channel, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self.channel = channel
        # Called (outside the lock) when the instance becomes bound to a conversation it can
        # serve: the app starts receiving its messages.
        self.on_bound: Callable[[str], None] = lambda conversation_id: None
        # Wall-clock time, not monotonic: join times are persisted and must
        # stay meaningful across restarts.
        self._clock = clock
        self.lock = threading.Lock()
        data = config.data_dir
        self.data_dir = data
        self.identity_md_path = data / "workspace" / "IDENTITY.md"
        self.binding_path = data / "convos" / "binding.json"
        self.credentials_dir = data / "credentials"
        self.history_dir = data / "history"

    # -- start-up ---------------------------------------------------------

    def load(self) -> None:
        """Create the directory layout and report a restored binding."""
        for directory in (self.data_dir, self.binding_path.parent, self.identity_md_path.parent):
            directory.mkdir(parents=True, exist_ok=True)
        try:
            binding = self._read_binding()
        except CorruptBindingError:
            logger.error("binding.json is unreadable; instance reports dirty until reset")
        else:
            if binding:
                logger.info("restored binding to conversation %s", binding.get("conversationId"))

    # -- reading ----------------------------------------------------------

    def _read_binding(self) -> dict[str, Any] | None:
        try:
            binding = read_json(self.binding_path)
        except ValueError as exc:
            raise CorruptBindingError(str(exc)) from exc
        if binding is None:
            return None
        if not isinstance(binding, dict) or not (binding.get("conversationId") or binding.get("status") == STATUS_PENDING):
            raise CorruptBindingError("binding.json does not hold a conversation")
        return binding

    def _read_identity_md(self) -> str | None:
        try:
            return self.identity_md_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _is_pending(self, binding: dict[str, Any]) -> bool:
        return binding.get("status") == STATUS_PENDING

    def _status_unlocked(self) -> dict[str, Any]:
        try:
            binding = self._read_binding()
        except CorruptBindingError:
            binding = None
        identity = self._read_identity_md()
        clean = (
            not self.binding_path.exists()
            and not (identity is not None and identity_md.has_custom_section(identity))
            and not dir_has_files(self.credentials_dir)
            and not dir_has_files(self.history_dir)
        )
        return {
            # A pending join has no conversation yet: the pool must not take it as accepted.
            "conversationId": binding.get("conversationId") if binding and not self._is_pending(binding) else None,
            "inboxId": (binding or {}).get("inboxId") or self.channel.inbox_id(),
            "pending": bool(binding) and self._is_pending(binding),
            "clean": clean,
        }

    def status(self) -> dict[str, Any]:
        with self.lock:
            return self._status_unlocked()

    # -- mutations --------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        with self.lock:
            try:
                existing = self._read_binding()
            except CorruptBindingError:
                raise AlreadyBoundError(
                    "stored conversation binding is unreadable; reset the instance first"
                ) from None
            if existing is not None:
                raise AlreadyBoundError("instance is already bound to a conversation")

            if self._config.provision_delay_seconds:
                # A slow provision (the real agent takes seconds): held under the lock, so a reset
                # that arrives meanwhile waits and then undoes it, as on the real runtime.
                time.sleep(self._config.provision_delay_seconds)

            self._write_instructions(request.agent_name, request.instructions)

            if self._config.fail_provision:
                # Deliberately after the instructions write: tests use this to
                # check that the pool notices an instance left dirty.
                raise SimulatedProvisionFailure("simulated provision failure")

            try:
                if request.join_url is None:
                    bound = self.channel.create(name=request.agent_name, profile_name=request.agent_name)
                else:  # already the canonical invite of this environment (runtime/invites.py)
                    bound = self.channel.join(invite_url=request.join_url, profile_name=request.agent_name,
                                              profile_image=request.profile_image, metadata=request.metadata)
            except ChannelError as exc:
                raise ChannelFailed(str(exc)) from exc
            binding = self._binding(request, bound)
            atomic_write_json(self.binding_path, binding)
            logger.info("provisioned conversation %s (status %s)", bound.conversation_id, bound.status)
        if bound.conversation_id and bound.status != STATUS_PENDING:
            self.on_bound(bound.conversation_id)
        return ProvisionResult(bound.invite_url, bound.conversation_id, bound.joined, bound.status)

    def _write_instructions(self, agent_name: str, instructions: str) -> None:
        existing = self._read_identity_md()
        updated = identity_md.apply_instructions(existing, agent_name, instructions)
        atomic_write_text(self.identity_md_path, updated)

    def _binding(self, request: ProvisionRequest, bound: Bound) -> dict[str, Any]:
        now = self._clock()
        return {
            **bound.extra,
            "conversationId": bound.conversation_id,
            "inviteUrl": bound.invite_url,
            "joined": bound.joined,
            "status": bound.status,
            "joinedAt": now if request.join_url is not None else None,
            "createdAt": now,
            "agentName": request.agent_name,
            "profileImage": request.profile_image,
            "metadata": request.metadata,
            "model": request.model,
            "xmtpEnv": self._config.xmtp_env,
            "channel": self.channel.name,
        }

    def binding(self) -> dict[str, Any] | None:
        with self.lock:
            try:
                return self._read_binding()
            except CorruptBindingError:
                return None

    def resolve_pending(self) -> bool:
        """Ask the channel whether a pending join was accepted; True once the instance serves it."""
        with self.lock:
            try:
                binding = self._read_binding()
            except CorruptBindingError:
                return False
            if not binding or not self._is_pending(binding):
                return False
            try:
                bound = self.channel.check_join(binding)
            except ChannelError as exc:
                logger.warning("checking the pending join failed: %s", exc)
                return False
            if bound.status == STATUS_PENDING or not bound.conversation_id:
                return False
            binding.update(bound.extra, conversationId=bound.conversation_id, status=bound.status, joined=bound.joined)
            atomic_write_json(self.binding_path, binding)
            logger.info("join accepted: conversation %s", bound.conversation_id)
        self.on_bound(bound.conversation_id)
        return True

    def credentials(self) -> dict[str, str]:
        """What the agent's tools may use: the variables the instance booted with, and the ones a
        claim or a self-provision delivered since (those win)."""
        path = self.credentials_dir / "env.json"
        try:
            delivered = read_json(path) if path.exists() else {}
        except ValueError:
            delivered = {}
        return {**os.environ, **(delivered if isinstance(delivered, dict) else {})}

    def model(self) -> str | None:
        binding = self.binding() or {}
        return binding.get("model") or (binding.get("metadata") or {}).get("model") or self._config.primary_model

    def identity_text(self) -> str:
        return self._read_identity_md() or ""

    def update_identity(self, request: ProvisionRequest) -> dict[str, Any]:
        """Replace the name and custom instructions of an instance, bound or not (a template sync
        after the claim). The conversation binding itself is kept."""
        with self.lock:
            self._write_instructions(request.agent_name, request.instructions)
            try:
                binding = self._read_binding()
            except CorruptBindingError:
                binding = None
            if binding is not None:
                binding["agentName"] = request.agent_name
                binding["metadata"] = {**(binding.get("metadata") or {}), **request.metadata}
                if request.model:
                    binding["model"] = request.model
                atomic_write_json(self.binding_path, binding)
            logger.info("identity updated")
            return self._status_unlocked()

    def set_credentials(self, values: dict[str, str], remove: list[str]) -> list[str]:
        """Store (or drop) tool credentials given to this instance at claim time, e.g. an inbox's
        key. They live under credentials/ (mode 0600, written atomically), so a reset wipes them
        and `clean` reports them. Returns the names held now, never the values."""
        with self.lock:
            path = self.credentials_dir / "env.json"
            current = read_json(path) if path.exists() else {}
            if not isinstance(current, dict):
                current = {}
            current.update(values)
            for name in remove:
                current.pop(name, None)
            self.credentials_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if current:
                atomic_write_json(path, current)
            else:
                path.unlink(missing_ok=True)
            logger.info("credentials now held: %s", ", ".join(sorted(current)) or "none")
            return sorted(current)

    def reset(self) -> dict[str, Any]:
        """Factory reset: stop serving, forget the conversation, the channel's identity (the
        Convos CLI's home: a new claim gets a new XMTP identity), credentials, history and custom
        instructions."""
        with self.lock:
            self.channel.stop()
            self.binding_path.unlink(missing_ok=True)
            self.channel.wipe()  # the channel's identity and conversations (the CLI's home)
            for directory in (self.credentials_dir, self.history_dir):
                shutil.rmtree(directory, ignore_errors=True)
                if directory.exists():
                    raise OSError(f"could not remove {directory.name}/")
            existing = self._read_identity_md()
            if existing is not None:
                remaining = identity_md.remove_instructions(existing)
                if remaining is None:
                    self.identity_md_path.unlink(missing_ok=True)
                elif remaining != existing:
                    atomic_write_text(self.identity_md_path, remaining)
            logger.info("instance reset")
            return self._status_unlocked()
