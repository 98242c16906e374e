"""A local stand-in for OpenRouter's OpenAI-compatible chat completions API (no network needed).

It answers `POST <base>/chat/completions` the way the real API does (`choices[0].message` with
`content` or `tool_calls`) and records every request, so tests (and a person trying `make run`)
can see that an agent's answer came from "the model" and what the agent sent it:

- the last message is a tool result: answers "Done: <result>";
- the person asks "get email" / "get sms" and `request_capability` is offered: calls it;
- the person asks for the wallet and `wallet_address` is offered: calls it;
- otherwise: "[<model>] You said: <their text>".

Run it by hand: `python -m tests.llm_standin --port 9999`, then start the pool with
`LOCAL_RUNTIME_ENV=OPENROUTER_API_URL=http://127.0.0.1:9999/v1,OPENROUTER_API_KEY=standin`.
"""
from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def answer(request: dict[str, Any]) -> dict[str, Any]:
    messages = request.get("messages") or []
    offered = {t["function"]["name"] for t in request.get("tools") or []}
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return {"role": "assistant", "content": f"Done: {last.get('content')}"}
    text = str(last.get("content") or "")
    said = text.split(": ", 1)[-1]
    wanted = re.search(r"get (email|sms|crypto)", said, re.I)
    if wanted and "request_capability" in offered:
        return _call("request_capability", {"capability": wanted.group(1).lower()})
    if "wallet" in said.lower() and "wallet_address" in offered:
        return _call("wallet_address", {})
    return {"role": "assistant", "content": f"[{request.get('model')}] You said: {said}"}


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}


class StandIn:
    """The server on a free port of 127.0.0.1, in a thread; `requests` holds what it received."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found"}})
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    return self._send(401, {"error": {"message": "No auth credentials found"}})
                standin.requests.append(body)
                standin.headers.append(dict(self.headers))
                self._send(200, {"id": f"gen-{len(standin.requests)}", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "message": answer(body), "finish_reason": "stop"}]})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9999)
    port = parser.parse_args().port
    with StandIn(port) as standin:
        print(f"OpenAI-compatible stand-in at {standin.url} (Ctrl-C stops)", flush=True)
        try:
            standin.thread.join()
        except KeyboardInterrupt:
            pass
