"""Process lifecycle: configuration, pid file, signals, serve loop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from runtime import __version__, pool_notify
from runtime.config import ConfigError, load_config
from runtime.files import atomic_write_text
from runtime.server import RuntimeHTTPServer
from runtime.agent import Agent, History, Incoming
from runtime.channels import ChannelError, make_channel
from runtime.state import RuntimeState

logger = logging.getLogger(__name__)

# How long shutdown waits for an in-flight provision/reset to finish.
_SHUTDOWN_LOCK_TIMEOUT = 5.0
# How often a pending join is checked for the owner's acceptance.
_PENDING_CHECK_S = 2.0


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _write_pid_file(path: Path) -> None:
    if path.exists():
        logger.warning("replacing stale pid file %s", path)
    atomic_write_text(path, f"{os.getpid()}\n")


def _remove_pid_file(path: Path) -> None:
    # Only remove our own pid file: another process may have taken over the
    # data directory in the meantime.
    try:
        if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove pid file %s: %s", path, exc)


def _install_signal_handlers(server: RuntimeHTTPServer) -> None:
    stopping = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() blocks until serve_forever() returns, and serve_forever()
        # runs in this (main) thread, so it must be called from another one.
        threading.Thread(target=server.shutdown, name="runtime-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)


def _wire(state: RuntimeState, channel, agent: Agent) -> None:
    """Messages of the bound conversation go to the agent; its answers go back to the channel.
    A binding restored from the data volume is served again at start; a pending join is watched
    until the owner accepts it."""

    def serve(conversation_id: str) -> None:
        def on_message(message: Incoming) -> None:
            reply = agent.handle(message)
            if reply:
                try:
                    channel.send(conversation_id, reply, reply_to=message.id)
                except ChannelError as exc:
                    logger.warning("sending the agent's reply failed: %s", exc)

        channel.start(conversation_id, on_message)

    state.on_bound = serve
    binding = state.binding()
    if binding and binding.get("conversationId") and binding.get("status") != "pending_acceptance":
        serve(binding["conversationId"])

    def watch_pending() -> None:
        while True:
            time.sleep(_PENDING_CHECK_S)
            binding = state.binding()
            if binding and binding.get("status") == "pending_acceptance" and state.resolve_pending():
                pool_notify.pending_join_resolved(state.credentials(), accepted=True)

    threading.Thread(target=watch_pending, name="pending-join-watch", daemon=True).start()


def main() -> int:
    _configure_logging()
    try:
        config = load_config()
    except ConfigError as exc:
        logger.error("configuration error: %s", exc)
        return 2

    try:
        channel = make_channel(config.channel, invite_host=config.invite_host, join_pending_seconds=config.join_pending_seconds,
                               data_dir=config.data_dir, convos_bin=config.convos_bin, xmtp_env=config.xmtp_env,
                               join_wait_seconds=config.join_wait_seconds)
    except ValueError as exc:
        logger.error("configuration error: %s", exc)
        return 2
    state = RuntimeState(config, channel)
    try:
        state.load()
        channel.inbox_id()
    except OSError as exc:
        logger.error("cannot prepare data directory %s: %s", config.data_dir, exc)
        return 1
    agent = Agent(identity_text=state.identity_text, credentials=state.credentials, model=state.model,
                  history=History(state.history_dir), own_ids=channel.own_ids, llm_url=config.llm_url)
    _wire(state, channel, agent)

    try:
        server = RuntimeHTTPServer(config, state)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return 1

    pid_path = config.data_dir / "runtime.pid"
    try:
        _write_pid_file(pid_path)
    except OSError as exc:
        logger.error("cannot write pid file %s: %s", pid_path, exc)
        server.server_close()
        return 1

    server.agent_history = agent.history.recent
    _install_signal_handlers(server)
    logger.info(
        "runtime %s listening on http://%s:%d (instance %s, xmtp %s, data %s, token %s)",
        __version__,
        config.host,
        config.port,
        config.instance_id,
        config.xmtp_env,
        config.data_dir,
        "configured" if config.gateway_token else "NOT configured",
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        channel.stop()
        # Keep the lock for good: an in-flight provision/reset finishes first,
        # and a keep-alive worker thread cannot start a new one while we exit.
        if not state.lock.acquire(timeout=_SHUTDOWN_LOCK_TIMEOUT):
            logger.warning("a provision/reset was still running at shutdown")
        _remove_pid_file(pid_path)
        logger.info("runtime stopped")
    return 0
