"""The runtime tells the pool when the owner accepted its pending join (instead of the pool
waiting for its next tick), with its own services token."""
from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.runtime.harness import RuntimeFactory, _wait_for

JOIN_URL = "https://dev.convos.org/v2?i=someInviteSlug123"


class PoolStandIn:
    """Records what reaches the pool's pending-acceptance routes."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": json.loads(body or b"{}")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_it_tells_the_pool_once_the_owner_accepted(start_runtime: RuntimeFactory) -> None:
    pool = PoolStandIn()
    token = secrets.token_hex(16)
    try:
        runtime = start_runtime(RUNTIME_JOIN_PENDING_SECONDS="1", POOL_URL=pool.url, INSTANCE_SERVICES_TOKEN=token)
        response = runtime.provision(joinUrl=JOIN_URL)
        assert response.status_code == 200 and response.json()["status"] == "pending_acceptance"
        assert not pool.received  # nothing to say while it waits
        assert _wait_for(lambda: pool.received, 10), runtime.log()
        assert pool.received == [{"path": "/api/pool/pending-acceptance/complete", "authorization": f"Bearer {token}", "body": {}}]
        assert token not in runtime.log()
    finally:
        pool.server.shutdown()
