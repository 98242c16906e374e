"""Fake infra provider, FOR BENCHMARKS AND TESTS ONLY: never select it for a real pool.

An instance costs no process, no port and no disk here. Every fake instance of this Python process
is served by ONE shared in-process HTTP server (ThreadingHTTPServer on 127.0.0.1, started lazily
on first use, daemon threads) under the path prefix `/i/<instance_id>`, so services reaches it
exactly as it reaches a real runtime, over HTTP:

    GET  /i/<id>/pool/health       200 {"ready": true, "runtime": "fake", ...}
    POST /i/<id>/pool/provision    binds a conversation (409 when already bound), same JSON as runtime/
    GET  /i/<id>/convos/status     {conversationId, inboxId, pending, clean}
    POST /i/<id>/convos/reset      {ok, reset, status}

State lives in memory only: an instance exists for as long as this process does, and a process
that did not create it (another gunicorn worker, a restart) reports it REMOVED. Bearer tokens are
not checked. `deploy_states` does no I/O: every known instance is SUCCESS; `redeploy` is a no-op.

Knob (Django settings, read on every request): FAKE_HEALTH_LATENCY_MS (default 0) sleeps inside
the health handler to simulate the network between the pool and a real instance.
"""
from __future__ import annotations

import json
import logging
import secrets
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from runtime.invites import invite_url
from runtime.validation import ValidationError, validate_provision
from services_app.providers.base import DeployState, InfraRef, ProviderError

logger = logging.getLogger(__name__)
HOST = "127.0.0.1"


@dataclass
class _FakeInstance:
    instance_id: str
    variables: dict[str, str]
    inbox_id: str = field(default_factory=lambda: secrets.token_hex(32))
    binding: dict[str, Any] | None = None
    instructions: str | None = None  # custom instructions written by the last provision
    credentials: dict[str, str] = field(default_factory=dict)  # claim-time tool credentials
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Test knobs (faults): a reset that leaves the claim's state behind; a provision that takes
    # this long in transit (before the instance acts on it); a provision that fails after writing.
    reset_clean: bool = True
    provision_delay_s: float = 0.0
    provision_fail: bool = False
    # Every credentials payload the instance ever received, for tests that follow a secret.
    credentials_received: list[dict[str, str]] = field(default_factory=list)

    @property
    def xmtp_env(self) -> str:
        return self.variables.get("XMTP_ENV", "dev")

    def status(self) -> dict[str, Any]:
        return {
            "conversationId": self.binding["conversationId"] if self.binding else None,
            "inboxId": self.inbox_id,
            "pending": False,
            "clean": self.binding is None and self.instructions is None and not self.credentials,
        }


_instances: dict[str, _FakeInstance] = {}
_registry_lock = threading.Lock()
_server: ThreadingHTTPServer | None = None
_server_lock = threading.Lock()


def _health_latency_s() -> float:
    from django.conf import settings

    return max(0.0, float(getattr(settings, "FAKE_HEALTH_LATENCY_MS", 0) or 0)) / 1000.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Health checks arrive HEALTH_CHECK_CONCURRENCY at a time; the default backlog of 5 would
    # drop connections and add SYN-retry seconds that no real instance would cost.
    request_queue_size = 1024

    def server_bind(self) -> None:
        # Skip HTTPServer's socket.getfqdn() (a reverse DNS lookup that can stall start-up).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (health-check timeout) leaves a broken pipe: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            logger.exception("fake provider: error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "convos-fake-runtime"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # thousands of health checks a tick: no access log

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _route(self) -> tuple[_FakeInstance | None, str]:
        # /i/<instance_id>/<route>
        parts = urlsplit(self.path).path.split("/", 3)
        if len(parts) < 4 or parts[1] != "i":
            return None, ""
        return _instances.get(parts[2]), "/" + parts[3]

    def do_GET(self) -> None:
        instance, route = self._route()
        if instance is None:
            self._send(404, {"error": "not found"})
        elif route == "/pool/health":
            latency = _health_latency_s()
            if latency:
                time.sleep(latency)
            self._send(200, {"ready": True, "runtime": "fake", "instanceId": instance.instance_id, "xmtpEnv": instance.xmtp_env})
        elif route == "/convos/status":
            with instance.lock:
                self._send(200, instance.status())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        instance, route = self._route()
        body = self._body()
        if instance is None:
            self._send(404, {"error": "not found"})
        elif route == "/pool/provision":
            self._provision(instance, body)
        elif route == "/pool/update":
            with instance.lock:
                instance.instructions = (body or {}).get("instructions")
                self._send(200, {"ok": True, "status": instance.status()})
        elif route == "/pool/credentials":
            with instance.lock:
                instance.credentials_received.append(dict((body or {}).get("set") or {}))
                instance.credentials.update((body or {}).get("set") or {})
                for name in (body or {}).get("remove") or []:
                    instance.credentials.pop(name, None)
                self._send(200, {"ok": True, "names": sorted(instance.credentials)})
        elif route == "/convos/reset":
            with instance.lock:
                if instance.reset_clean:
                    instance.binding, instance.instructions = None, None
                    instance.credentials.clear()
                self._send(200, {"ok": True, "reset": True, "status": instance.status()})
        else:
            self._send(404, {"error": "not found"})

    def _provision(self, instance: _FakeInstance, body: Any) -> None:
        try:
            # The instance's own environment decides which invites it takes, as on the real runtime.
            request = validate_provision(body, xmtp_env=instance.xmtp_env)
        except ValidationError as exc:
            self._send(400, {"error": str(exc)})
            return
        if instance.provision_delay_s:
            time.sleep(instance.provision_delay_s)  # in transit: a reset may overtake it
        with instance.lock:
            if instance.binding is not None:
                self._send(409, {"error": "instance is already bound to a conversation"})
                return
            if instance.provision_fail:
                instance.instructions = request.instructions  # failed half-way: left dirty
                self._send(500, {"error": "provision failed"})
                return
            joined = request.join_url is not None
            instance.instructions = request.instructions
            instance.binding = {
                "conversationId": secrets.token_hex(16),
                "inviteUrl": request.join_url or invite_url(secrets.token_urlsafe(16), xmtp_env=instance.xmtp_env),
                "joined": joined,
                "status": "joined" if joined else "created",
            }
            self._send(200, {"ok": True, **instance.binding})


def fake_instance(instance_id: str) -> _FakeInstance | None:
    """The in-memory instance (tests read its state and set its fault knobs)."""
    return _instances.get(instance_id)


def _server_port() -> int:
    """Start the shared server on first use (once per process) and return its port."""
    global _server
    with _server_lock:
        if _server is None:
            server = _Server((HOST, 0), _Handler)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="fake-provider-http", daemon=True).start()
            _server = server
            logger.info("fake provider serving instances on http://%s:%d", HOST, server.server_port)
        return _server.server_port


class FakeProvider:
    """InfraProvider with in-memory instances behind one shared HTTP server (benchmarks, tests)."""

    name = "fake"

    @classmethod
    def from_settings(cls) -> "FakeProvider":
        return cls()

    def create(self, *, instance_id: str, variables: dict[str, str]) -> InfraRef:
        port = _server_port()
        with _registry_lock:
            if instance_id in _instances:
                raise ProviderError(f"Fake instance {instance_id} already exists", permanent=True)
            _instances[instance_id] = _FakeInstance(instance_id=instance_id, variables=dict(variables))
        url = f"http://{HOST}:{port}/i/{instance_id}"
        return InfraRef(instance_id=instance_id, url=url, image_tag="fake", provider_state={"port": port})

    def destroy(self, ref: InfraRef) -> None:
        with _registry_lock:
            _instances.pop(ref.instance_id, None)

    def deploy_states(self, refs: list[InfraRef]) -> dict[str, DeployState]:
        return {
            ref.instance_id: DeployState(deploy_status="SUCCESS" if ref.instance_id in _instances else "REMOVED", url=ref.url)
            for ref in refs
        }

    def redeploy(self, ref: InfraRef) -> InfraRef:
        return ref

    def destroy_unrecorded(self, instance_id: str) -> bool:
        with _registry_lock:
            return _instances.pop(instance_id, None) is not None

