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

A fleet other processes share: `python manage.py fake_fleet --port 8765` serves the same handler
from a process of its own (on an asyncio front, services_app/providers/fake_fleet_server.py), plus
a control API that only that process answers:

    POST   /fleet/instances                 {instanceId, variables} -> 201 {instanceId}; 409 if it exists
    GET    /fleet/instances                 {instanceIds: [...]}
    DELETE /fleet/instances/<id>            {removed: bool}
    POST   /fleet/instances/<id>/redeploy   {ok: true}; 404 when it does not exist
    POST   /fleet/states                    {instanceIds: [...]} -> {existing: [...]}
    POST   /fleet/knobs                     {"FAKE_HEALTH_LATENCY_MS": 50, ...}: set this fleet's FAKE_*_MS knobs

With FAKE_FLEET_URL set (e.g. http://127.0.0.1:8765), the provider in every process (gunicorn and
Celery workers, the tick, a bench) creates, destroys and asks the deploy states of that fleet over
HTTP, and instance URLs point at it; the in-process server is then never started. The fleet keeps
its state until it exits; a fleet that cannot be reached is a ProviderError, never "all removed".
Empty (the default): everything stays in this process, as described above.

Knob (Django settings, read on every request): FAKE_HEALTH_LATENCY_MS (default 0) sleeps inside
the health handler to simulate the network between the pool and a real instance (in a fleet
process, that process's own setting or its --health-latency-ms).
Fault knobs (the same way, default 0): FAKE_CREATE_DELAY_MS and FAKE_DESTROY_DELAY_MS hold a fleet's
answer to a create (the instance exists already) or a destroy (it is gone already), and
FAKE_PROVISION_DELAY_MS delays every provision: windows in which tests SIGKILL the caller.
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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from runtime.invites import invite_url
from runtime.validation import ValidationError, validate_provision
from services_app.providers.base import DeployState, InfraRef, OwnedResource, ProviderError

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
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))  # tests age it (orphan sweep)

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
# The fleet's answers are small and fast; a fleet that does not answer in this long is down.
FLEET_TIMEOUT_S = 10.0


def _health_latency_s() -> float:
    return _knob_s("FAKE_HEALTH_LATENCY_MS")


def _knob_s(name: str) -> float:
    """A delay knob (milliseconds in settings) in seconds; read on every request."""
    from django.conf import settings

    return max(0.0, float(getattr(settings, name, 0) or 0)) / 1000.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Only a fleet process (`manage.py fake_fleet`) answers the /fleet/ control API.
    fleet_control = False
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
    # The headers and the body leave in two writes: with Nagle's algorithm on, a kept-alive
    # connection waits for the client's delayed ACK (~40 ms) before the body, which no real
    # instance's server costs. TCP_NODELAY, as production HTTP servers set it.
    disable_nagle_algorithm = True
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

    def _fleet(self, method: str) -> bool:
        """Answer the control API of a fleet process; False: not a control request (or not a fleet)."""
        path = urlsplit(self.path).path
        if not (self.server.fleet_control and path.startswith("/fleet/")):
            return False
        body = self._body() if method == "POST" else {}
        if path == "/fleet/instances" and method == "POST":
            instance_id, variables = (body or {}).get("instanceId"), (body or {}).get("variables") or {}
            if not isinstance(instance_id, str) or not instance_id or "/" in instance_id or not isinstance(variables, dict):
                self._send(400, {"error": "instanceId (a string without /) and variables (an object) are required"})
                return True
            with _registry_lock:
                if instance_id in _instances:
                    self._send(409, {"error": f"Fake instance {instance_id} already exists"})
                    return True
                _instances[instance_id] = _FakeInstance(instance_id=instance_id, variables={str(k): str(v) for k, v in variables.items()})
            if delay := _knob_s("FAKE_CREATE_DELAY_MS"):
                time.sleep(delay)  # made, not yet answered: a caller killed now leaves an unrecorded instance
            self._send(201, {"instanceId": instance_id})
        elif path == "/fleet/instances" and method == "GET":
            with _registry_lock:
                self._send(200, {"instanceIds": sorted(_instances),
                                 "createdAt": {i: f.created_at.isoformat() for i, f in _instances.items()}})
        elif path == "/fleet/states" and method == "POST":
            ids = (body or {}).get("instanceIds")
            if not isinstance(ids, list):
                self._send(400, {"error": "instanceIds (a list) is required"})
                return True
            self._send(200, {"existing": [i for i in ids if isinstance(i, str) and i in _instances]})
        elif path == "/fleet/knobs" and method == "POST":
            # The fleet's own fault and latency knobs (benches switch health latency between runs
            # without losing the fleet): {"FAKE_HEALTH_LATENCY_MS": 50, ...}, FAKE_* names only.
            from django.conf import settings

            knobs = body if isinstance(body, dict) else {}
            if not knobs or any(not k.startswith("FAKE_") or not k.endswith("_MS") or not isinstance(v, (int, float)) for k, v in knobs.items()):
                self._send(400, {"error": "an object of FAKE_*_MS names and numbers is required"})
                return True
            for name, value in knobs.items():
                setattr(settings, name, float(value))
            self._send(200, {"ok": True})
        elif path.startswith("/fleet/instances/") and path.endswith("/redeploy") and method == "POST":
            instance_id = unquote(path[len("/fleet/instances/"):-len("/redeploy")])
            if instance_id in _instances:
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": "not found"})
        elif path.startswith("/fleet/instances/") and method == "DELETE":
            with _registry_lock:
                removed = _instances.pop(unquote(path[len("/fleet/instances/"):]), None) is not None
            if delay := _knob_s("FAKE_DESTROY_DELAY_MS"):
                time.sleep(delay)  # gone, not yet answered: a caller killed now leaves its rows behind
            self._send(200, {"removed": removed})
        else:
            self._send(404, {"error": "not found"})
        return True

    def do_DELETE(self) -> None:
        if not self._fleet("DELETE"):
            self._send(404, {"error": "not found"})

    def do_GET(self) -> None:
        if self._fleet("GET"):
            return
        instance, route = self._route()
        if instance is None:
            self._send(404, {"error": "not found"})
        elif route == "/pool/health":
            latency = _health_latency_s()
            if latency:
                time.sleep(latency)
            self._send(200, health_payload(instance))
        elif route == "/convos/status":
            with instance.lock:
                self._send(200, instance.status())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self._fleet("POST"):
            return
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
        if delay := instance.provision_delay_s or _knob_s("FAKE_PROVISION_DELAY_MS"):
            time.sleep(delay)  # in transit: a reset may overtake it
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
    """The in-memory instance (tests read its state and set its fault knobs). In-process only: an
    instance of a fleet process (FAKE_FLEET_URL) lives in that process, and this returns None."""
    return _instances.get(instance_id)


def health_payload(instance: _FakeInstance) -> dict[str, Any]:
    """A fake instance's `/pool/health` answer (the threaded handler and the fleet's asyncio front)."""
    return {"ready": True, "runtime": "fake", "instanceId": instance.instance_id, "xmtpEnv": instance.xmtp_env}


_sessions = threading.local()


def _session() -> requests.Session:
    # One keep-alive session per thread (health checks and claims run in many threads at once).
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def _fleet_call(fleet_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One control call to a fleet process: (status, JSON). Unreachable or a 5xx: ProviderError."""
    try:
        response = _session().request(method, f"{fleet_url}{path}", json=body, timeout=FLEET_TIMEOUT_S)
        payload = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(f"Fake fleet at {fleet_url} unreachable: {exc.__class__.__name__}") from exc
    if response.status_code >= 500:
        raise ProviderError(f"Fake fleet at {fleet_url} answered {response.status_code}")
    return response.status_code, payload


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
    """InfraProvider with in-memory instances behind one shared HTTP server (benchmarks, tests):
    this process's own, or with `fleet_url` (FAKE_FLEET_URL) a fleet process shared by many."""

    name = "fake"

    def __init__(self, fleet_url: str = "") -> None:
        self.fleet_url = fleet_url.rstrip("/")

    @classmethod
    def from_settings(cls) -> "FakeProvider":
        from django.conf import settings

        return cls(fleet_url=getattr(settings, "FAKE_FLEET_URL", "") or "")

    def _path(self, instance_id: str) -> str:
        return f"/fleet/instances/{quote(instance_id, safe='')}"

    def create(self, *, instance_id: str, variables: dict[str, str]) -> InfraRef:
        if self.fleet_url:
            status, answer = _fleet_call(self.fleet_url, "POST", "/fleet/instances",
                                         {"instanceId": instance_id, "variables": dict(variables)})
            if status == 409:
                raise ProviderError(f"Fake instance {instance_id} already exists", permanent=True)
            if status != 201:
                raise ProviderError(f"Fake fleet refused to create {instance_id}: {status} {answer.get('error', '')}", permanent=True)
            return InfraRef(instance_id=instance_id, url=f"{self.fleet_url}/i/{instance_id}", image_tag="fake",
                            provider_state={"fleet": self.fleet_url})
        port = _server_port()
        with _registry_lock:
            if instance_id in _instances:
                raise ProviderError(f"Fake instance {instance_id} already exists", permanent=True)
            _instances[instance_id] = _FakeInstance(instance_id=instance_id, variables=dict(variables))
        url = f"http://{HOST}:{port}/i/{instance_id}"
        return InfraRef(instance_id=instance_id, url=url, image_tag="fake", provider_state={"port": port})

    def destroy(self, ref: InfraRef) -> None:
        if self.fleet_url:
            _fleet_call(self.fleet_url, "DELETE", self._path(ref.instance_id))
            return
        with _registry_lock:
            _instances.pop(ref.instance_id, None)

    def deploy_states(self, refs: list[InfraRef], *, full: bool = True) -> dict[str, DeployState]:
        if self.fleet_url:
            if not refs:
                return {}
            # One call for the whole batch; an unreachable fleet raises instead of reporting all REMOVED.
            _, answer = _fleet_call(self.fleet_url, "POST", "/fleet/states", {"instanceIds": [r.instance_id for r in refs]})
            existing = set(answer.get("existing") or [])
        else:
            existing = {ref.instance_id for ref in refs if ref.instance_id in _instances}
        return {
            ref.instance_id: DeployState(deploy_status="SUCCESS" if ref.instance_id in existing else "REMOVED", url=ref.url)
            for ref in refs
        }

    def redeploy(self, ref: InfraRef) -> InfraRef:
        if self.fleet_url:
            status, _ = _fleet_call(self.fleet_url, "POST", f"{self._path(ref.instance_id)}/redeploy")
            if status == 404:
                raise ProviderError(f"Fake instance {ref.instance_id} does not exist", permanent=True)
        return ref

    def destroy_unrecorded(self, instance_id: str) -> bool:
        if self.fleet_url:
            _, answer = _fleet_call(self.fleet_url, "DELETE", self._path(instance_id))
            return bool(answer.get("removed"))
        with _registry_lock:
            return _instances.pop(instance_id, None) is not None

    def list_owned(self) -> list[OwnedResource]:
        """Every instance of this process (or of the fleet), with when it was made (the orphan
        sweep's grace period; a fleet that does not say leaves its instances ageless, never orphans)."""
        if self.fleet_url:
            _, answer = _fleet_call(self.fleet_url, "GET", "/fleet/instances")
            made = answer.get("createdAt") or {}
            return [OwnedResource(resource_id=i, name=i, instance_id=i,
                                  created_at=datetime.fromisoformat(made[i]) if made.get(i) else None)
                    for i in answer.get("instanceIds") or []]
        with _registry_lock:
            return [OwnedResource(resource_id=i.instance_id, name=i.instance_id, instance_id=i.instance_id, created_at=i.created_at)
                    for i in _instances.values()]

    def destroy_owned(self, resource: OwnedResource) -> None:
        self.destroy_unrecorded(resource.instance_id)
