"""A stand-in for the production image's pool-server (xmtplabs/convos-managed-agent-runtime,
runtime/convos-platform/pool-server/index.ts), kinds openclaw and hermes, for tests.

    standin = ProductionRuntimeStandin()        # listening at standin.url; answers 502 until booted
    ProductionRuntimeStandin(env)               # booted at once (raises before listening, as below)
    standin.boot(env)                           # the container starts with `env` (raises StandinRefused
                                                # without RUNTIME_TYPE, _RUNTIME_IMAGE, DEFAULT_AGENT_NAME,
                                                # POOL_ENVIRONMENT or OPENROUTER_API_KEY, as the image does)
    standin.env, standin.restarts               # its variables now; every POST /pool/restart {env}
    standin.provisions, standin.binding         # every provision body; the bound conversation
    standin.close()

Served like production: GET /pool/health {ready, version, runtime} without auth; with the
GATEWAY_TOKEN bearer: POST /pool/provision (a second binding: the agent's /convos/join answers
409, which the pool-server retries and then reports as a 500), POST /pool/restart {env} (merged
into its variables, the agent restarted: {ok: true}), GET /convos/status, POST /convos/reset
(proxied to the agent). Anything else (e.g. /pool/credentials, /pool/update) reaches the agent,
which has no such route: 404. The agent reads no per-claim model; hermes reads HERMES_MODEL at boot.
"""
from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REQUIRED = ("RUNTIME_TYPE", "_RUNTIME_IMAGE", "DEFAULT_AGENT_NAME", "POOL_ENVIRONMENT", "OPENROUTER_API_KEY")
JOIN_ATTEMPTS = 30  # the pool-server's callConvosWithRetry


class StandinRefused(RuntimeError):
    """The image would not start with these variables (it exits at boot)."""


def check_boot(env: dict[str, str]) -> None:
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise StandinRefused(f"refusing to start: {', '.join(missing)} not set")
    if env["RUNTIME_TYPE"] not in ("openclaw", "hermes"):
        raise StandinRefused(f"Invalid RUNTIME_TYPE: {env['RUNTIME_TYPE']}")


class ProductionRuntimeStandin:
    def __init__(self, env: dict[str, str] | None = None, *, host: str = "127.0.0.1") -> None:
        if env is not None:
            check_boot(env)
        self.env: dict[str, str] | None = dict(env) if env is not None else None
        self.restarts: list[dict[str, str]] = []
        self.provisions: list[dict[str, Any]] = []
        self.binding: dict[str, Any] | None = None
        self.join_attempts = 0
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def boot(self, env: dict[str, str]) -> "ProductionRuntimeStandin":
        check_boot(env)
        with self.lock:
            self.env = dict(env)
        return self

    @property
    def runtime(self) -> str:
        return (self.env or {}).get("RUNTIME_TYPE", "")

    @property
    def model(self) -> str | None:
        """The model the agent runs (hermes: HERMES_MODEL at its last start); openclaw: None."""
        return (self.env or {}).get("HERMES_MODEL") if self.runtime == "hermes" else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ProductionRuntimeStandin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the routes ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        binding = self.binding or {}
        return {"conversationId": binding.get("conversationId"), "inboxId": binding.get("inboxId"), "pending": False,
                "clean": self.binding is None}

    def provision(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not body.get("agentName") or not isinstance(body.get("agentName"), str):
            return 400, {"error": "agentName (string) is required"}
        if not body.get("instructions") or not isinstance(body.get("instructions"), str):
            return 400, {"error": "instructions (string) is required"}
        self.provisions.append(body)
        if self.binding is not None:
            # The agent refuses a second binding with 409; the pool-server retries, then gives up.
            self.join_attempts += JOIN_ATTEMPTS
            route = "/convos/join" if body.get("joinUrl") else "/convos/conversation"
            return 500, {"error": f"Convos {'join' if body.get('joinUrl') else 'invite'} failed after {JOIN_ATTEMPTS} attempts: "
                                  f"{route} returned 409: already bound"}
        conversation = secrets.token_hex(16)
        join_url = body.get("joinUrl")
        # Only what the pool-server hands the agent on a join/conversation (no model: it reads none).
        self.binding = {"conversationId": conversation, "inboxId": secrets.token_hex(16), "agentName": body["agentName"],
                        "instructions": body["instructions"], "profileImage": body.get("profileImage"),
                        "metadata": body.get("metadata"), "model": self.model}
        if join_url:
            return 200, {"ok": True, "inviteUrl": join_url, "conversationId": conversation, "joined": True, "status": "joined"}
        invite = f"https://dev.convos.org/v2?i={secrets.token_hex(8)}"
        return 200, {"ok": True, "inviteUrl": invite, "conversationId": conversation, "joined": False, "status": "created"}

    def restart(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        extra = body.get("env") or {}
        if not isinstance(extra, dict):
            return 500, {"error": "Restart failed"}
        extra = {str(k): str(v) for k, v in extra.items()}
        self.restarts.append(extra)
        assert self.env is not None
        self.env.update(extra)  # Object.assign(process.env, extraEnv): kept for later restarts too
        return 200, {"ok": True}

    def reset(self) -> tuple[int, dict[str, Any]]:
        self.binding = None  # the agent's own reset: conversation and instructions (not the env)
        return 200, {"ok": True, "reset": True, "status": self.status()}


def _handler(standin: ProductionRuntimeStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any] | None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return None
            return body if isinstance(body, dict) else None

        def _authorized(self) -> bool:
            token = (standin.env or {}).get("GATEWAY_TOKEN")
            if not token or self.headers.get("Authorization", "") == f"Bearer {token}":
                return True
            self._send(401, {"error": "Unauthorized"})
            return False

        def _handle(self, method: str) -> None:
            with standin.lock:
                standin.requests.append((method, self.path))
                body = self._body() if method == "POST" else {}
                if standin.env is None:
                    return self._send(502, {"error": "Application failed to respond"})  # the container is not up
                route = (method, self.path)
                if route == ("GET", "/pool/health"):
                    return self._send(200, {"ready": True, "version": "standin", "runtime": standin.runtime})
                if not self._authorized():
                    return None
                if body is None:
                    return self._send(400, {"error": "Invalid JSON body"})
                if route == ("POST", "/pool/provision"):
                    return self._send(*standin.provision(body))
                if route == ("POST", "/pool/restart"):
                    return self._send(*standin.restart(body))
                if route == ("GET", "/convos/status"):
                    return self._send(200, standin.status())
                if route == ("POST", "/convos/reset"):
                    return self._send(*standin.reset())
                return self._send(404, {"error": "Not found"})  # proxied to the agent, which has no such route

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler
