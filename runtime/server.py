"""HTTP layer: routing, auth, body parsing and JSON responses.

Only the standard library is used so the stand-in runs anywhere a Python
interpreter exists. Every response, including errors produced by the
``http.server`` machinery itself, is JSON so the pool manager needs exactly
one error-handling path.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from runtime import __version__, kinds
from runtime.config import Config
from runtime.channels.base import ChannelError
from runtime.limits import CHAT_TEXT_MAX, SENDER_NAME_MAX
from runtime.state import AlreadyBoundError, ChannelFailed, RuntimeState, SimulatedProvisionFailure
from runtime.validation import ValidationError, validate_credentials, validate_provision

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# After refusing an oversized body we still swallow some of it (without
# keeping it) before closing: closing a socket with unread data makes the
# kernel send RST, and the client would then see "connection reset" instead
# of our 413. The caps keep a hostile client from tying up a thread.
_LINGER_MAX_BYTES = 16 * 1024 * 1024
_LINGER_MAX_SECONDS = 2.0


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.headers = headers or {}


class RuntimeHTTPServer(ThreadingHTTPServer):
    # Worker threads must not keep the process alive after shutdown; state
    # writes are atomic and the shutdown path waits on the state lock.
    daemon_threads = True

    def __init__(
        self,
        config: Config,
        state: RuntimeState,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.state = state
        self.agent_history: Callable[[], list[dict[str, Any]]] = list
        self._monotonic = monotonic
        self.started_at = monotonic()
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        super().__init__((config.host, config.port), RuntimeRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup
        # that can stall start-up for seconds in containers; we never use it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def is_ready(self) -> bool:
        booted = self._monotonic() - self.started_at >= self.config.boot_seconds
        return booted and self.state.channel.ready()[0]


Handler = Callable[["RuntimeRequestHandler"], None]


class RuntimeRequestHandler(BaseHTTPRequestHandler):
    server: RuntimeHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"convos-runtime/{__version__}"
    sys_version = ""
    # Idle keep-alive connections are dropped after this many seconds so they
    # do not pin worker threads forever.
    timeout = 30

    # -- plumbing -----------------------------------------------------------

    def version_string(self) -> str:
        # The stdlib appends the Python version; we do not advertise it.
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self._reset_request_flags()

    def _reset_request_flags(self) -> None:
        self._body_consumed = False
        self._responded = False

    def _route_path(self) -> str:
        return urlsplit(getattr(self, "path", "") or "").path

    def _log_path(self) -> str:
        # Query strings are dropped and control characters escaped so a
        # request line cannot forge log lines.
        path = self._route_path()[:200]
        return path.encode("ascii", "backslashreplace").decode("ascii").replace("\n", "\\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = code.value if isinstance(code, HTTPStatus) else code
        logger.info("%s %s %s", self.command or "-", self._log_path(), status)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Only reached for protocol-level errors and timeouts (log_request is
        # overridden); those messages contain at most the request line.
        logger.warning("%s: %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """JSON version of the stdlib error page (malformed request lines,
        oversized headers, unsupported methods...)."""
        self.log_error("code %d, message %s", code, message)
        if message is None:
            try:
                message = HTTPStatus(code).phrase
            except ValueError:
                message = "error"
        self.close_connection = True
        self._send_json(code, {"error": message}, close=True)

    def _send_json(
        self,
        status: int,
        payload: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._responded = True

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.headers.get("Transfer-Encoding"):
                raise HttpError(411, "Content-Length is required", close=True)
            return None
        try:
            length = int(raw)
        except ValueError:
            raise HttpError(400, "Content-Length is not a number", close=True) from None
        if length < 0:
            raise HttpError(400, "Content-Length is negative", close=True)
        return length

    def _read_json_body(self, *, optional: bool) -> Any:
        length = self._content_length() or 0
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"body exceeds {MAX_BODY_BYTES} bytes", close=True)
        raw = self.rfile.read(length) if length else b""
        self._body_consumed = True
        if len(raw) != length:
            raise HttpError(400, "body is shorter than Content-Length", close=True)
        if not raw.strip():
            if optional:
                return {}
            raise HttpError(400, "body must be a JSON object")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HttpError(400, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "body must be a JSON object")
        return body

    def _discard_unread_body(self) -> None:
        """Keep the connection in sync when a handler answered without
        reading the body (401, 404, 413...)."""
        if self._body_consumed:
            return
        self._body_consumed = True
        try:
            length = self._content_length()
        except HttpError:
            self.close_connection = True
            return
        if not length:
            return
        if length <= MAX_BODY_BYTES and not self.close_connection:
            self.rfile.read(length)
            return
        self.close_connection = True
        self._linger()

    def _linger(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
        except OSError:
            return
        deadline = time.monotonic() + _LINGER_MAX_SECONDS
        remaining = _LINGER_MAX_BYTES
        while remaining > 0 and time.monotonic() < deadline:
            try:
                chunk = self.connection.recv(min(65536, remaining))
            except OSError:
                return
            if not chunk:
                return
            remaining -= len(chunk)

    def _dispatch(self) -> None:
        self._reset_request_flags()
        routes = ROUTES.get(self._route_path())
        try:
            if routes is None:
                raise HttpError(404, "not found")
            method = "GET" if self.command == "HEAD" and "GET" in routes else self.command
            handler = routes.get(method)
            if handler is None:
                allowed = ", ".join(sorted(routes))
                self._send_json(
                    405, {"error": f"method {self.command} not allowed"}, headers={"Allow": allowed}
                )
                return
            handler(self)
        except HttpError as exc:
            if not self._responded:
                self._send_json(
                    exc.status, {"error": exc.message}, headers=exc.headers, close=exc.close
                )
            if exc.close:
                self.close_connection = True
        except Exception:
            logger.exception("unhandled error in %s %s", self.command, self._log_path())
            if not self._responded:
                self._send_json(500, {"error": "internal error"}, close=True)
            self.close_connection = True
        finally:
            try:
                self._discard_unread_body()
            except OSError:
                self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch
    do_TRACE = do_CONNECT = _dispatch

    # -- auth ---------------------------------------------------------------

    def _require_token(self) -> None:
        expected = self.server.config.gateway_token
        if not expected:
            raise HttpError(503, "GATEWAY_TOKEN is not configured")
        scheme, _, supplied = (self.headers.get("Authorization") or "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not supplied.strip():
            raise HttpError(401, "missing bearer token", headers=challenge)
        # Constant-time comparison on bytes (compare_digest rejects non-ASCII str).
        if not hmac.compare_digest(supplied.strip().encode("utf-8"), expected.encode("utf-8")):
            raise HttpError(401, "invalid bearer token", headers=challenge)

    # -- routes -------------------------------------------------------------

    def handle_health(self) -> None:
        ready = self.server.is_ready()
        config = self.server.config
        state = self.server.state
        channel_ready, why = state.channel.ready()
        payload = {
            "ready": ready,
            "version": __version__,
            "runtime": kinds.CONVOS_PYTHON,
            "channel": state.channel.name,
            "channelReady": channel_ready,
            # The bound conversation's messages reach the agent now (false while unclaimed, or
            # while the Convos CLI's serve restarts).
            "listening": state.channel.listening(),
            # Whether an answer can come from a model at all (never the key itself).
            "llm": {"configured": bool(state.credentials().get("OPENROUTER_API_KEY")), "model": state.model()},
            "instanceId": config.instance_id,
            "xmtpEnv": config.xmtp_env,
        }
        if why:
            payload["reason"] = why
        self._send_json(200 if ready else 503, payload)

    def handle_provision(self) -> None:
        self._require_token()
        if not self.server.is_ready():
            raise HttpError(503, "runtime is not ready")
        body = self._read_json_body(optional=False)
        try:
            request = validate_provision(body, xmtp_env=self.server.config.xmtp_env)
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from None
        try:
            result = self.server.state.provision(request)
        except AlreadyBoundError as exc:
            raise HttpError(409, str(exc)) from None
        except ChannelFailed as exc:
            logger.warning("provision failed at the channel: %s", exc)
            raise HttpError(502, f"the conversation could not be set up: {exc}") from None
        except SimulatedProvisionFailure:
            logger.warning("provision failed on purpose (RUNTIME_FAIL_PROVISION)")
            raise HttpError(500, "simulated provision failure") from None
        except Exception:
            logger.exception("provision failed")
            raise HttpError(500, "provision failed") from None
        self._send_json(200, result.to_json())

    def handle_update(self) -> None:
        """New name and instructions for an instance that may already be bound (template sync;
        an extension of the reference protocol, whose provision answers 409 once bound)."""
        self._require_token()
        body = self._read_json_body(optional=False)
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "joinUrl"}
        try:
            request = validate_provision(body, xmtp_env=self.server.config.xmtp_env)
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from None
        self._send_json(200, {"ok": True, "status": self.server.state.update_identity(request)})

    def handle_credentials(self) -> None:
        """Tool credentials for this claim (an extension of the reference protocol: the pool
        delivers claim-time tools here instead of restarting the instance with new variables)."""
        self._require_token()
        body = self._read_json_body(optional=False)
        try:
            values, remove = validate_credentials(body)
        except ValidationError as exc:
            raise HttpError(400, str(exc)) from None
        self._send_json(200, {"ok": True, "names": self.server.state.set_credentials(values, remove)})

    def handle_status(self) -> None:
        self._require_token()
        state = self.server.state
        if (state.binding() or {}).get("status") == "pending_acceptance":
            state.resolve_pending()  # answer with the latest: the pool polls this for pending joins
        self._send_json(200, state.status())

    def handle_reset(self) -> None:
        self._require_token()
        self._read_json_body(optional=True)  # content is ignored; {} expected
        try:
            status = self.server.state.reset()
        except Exception:
            logger.exception("reset failed")
            raise HttpError(500, "reset failed") from None
        self._send_json(200, {"ok": True, "reset": True, "status": status})


    def handle_agent_message(self) -> None:
        """A person's message to the agent (loopback channel): the agent's replies come back."""
        self._require_token()
        body = self._read_json_body(optional=False)
        text, sender = body.get("text"), body.get("senderName") or "you"
        if not isinstance(text, str) or not text.strip() or len(text) > CHAT_TEXT_MAX:
            raise HttpError(400, f"text: a non-empty string of at most {CHAT_TEXT_MAX} characters")
        if not isinstance(sender, str) or len(sender) > SENDER_NAME_MAX:
            raise HttpError(400, f"senderName: a string of at most {SENDER_NAME_MAX} characters")
        channel = self.server.state.channel
        if not hasattr(channel, "deliver"):
            raise HttpError(409, f"this instance talks through its {channel.name} channel, not this endpoint")
        try:
            replies = channel.deliver(text.strip(), sender_name=sender)
        except ChannelError as exc:
            raise HttpError(409, str(exc)) from None
        self._send_json(200, {"replies": replies})

    def handle_agent_history(self) -> None:
        self._require_token()
        self._send_json(200, {"messages": self.server.agent_history()})


ROUTES: dict[str, dict[str, Handler]] = {
    "/agent/messages": {"POST": RuntimeRequestHandler.handle_agent_message, "GET": RuntimeRequestHandler.handle_agent_history},
    "/pool/health": {"GET": RuntimeRequestHandler.handle_health},
    "/pool/credentials": {"POST": RuntimeRequestHandler.handle_credentials},
    "/pool/update": {"POST": RuntimeRequestHandler.handle_update},
    "/pool/provision": {"POST": RuntimeRequestHandler.handle_provision},
    "/convos/status": {"GET": RuntimeRequestHandler.handle_status},
    "/convos/reset": {"POST": RuntimeRequestHandler.handle_reset},
}
