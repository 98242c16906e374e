"""The fake fleet process's HTTP front (`manage.py fake_fleet`), FOR BENCHMARKS AND TESTS ONLY.

The fleet stands in for thousands of instances, each of which in production answers its own
health checks on its own machine. Served by the threaded stdlib server (a thread per kept-alive
connection, headers parsed by the email package) 5,000 health checks cost the fleet ~1.5-2.5 s of
CPU on the bench's two cores, so the benchmark measured the stand-in, not the pool. Here one
asyncio loop answers `GET /i/<id>/pool/health` itself (the same JSON as the threaded handler,
FAKE_HEALTH_LATENCY_MS as a non-blocking sleep), and hands every other request, byte for byte, to
the threaded handler (services_app/providers/fake.py `_Handler`) on a worker thread, so the
control API, provisioning and their fault knobs behave exactly as in-process.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from services_app.providers import fake

logger = logging.getLogger(__name__)
_MAX_HEAD = 64 * 1024
_HEALTH_PREFIX, _HEALTH_SUFFIX = "/i/", "/pool/health"


def _response(status: int, reason: str, payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nServer: convos-fake-runtime\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


def _health_instance_id(method: str, target: str) -> str | None:
    """The instance id of a health check (`GET /i/<id>/pool/health`), else None."""
    if method != "GET" or not target.startswith(_HEALTH_PREFIX) or not target.endswith(_HEALTH_SUFFIX):
        return None
    instance_id = target[len(_HEALTH_PREFIX):-len(_HEALTH_SUFFIX)]
    return instance_id if instance_id and "/" not in instance_id else None


def _dispatch(raw: bytes) -> bytes:
    """One request through the threaded handler, on in-memory streams; returns its response bytes."""
    handler = fake._Handler.__new__(fake._Handler)
    handler.server = SimpleNamespace(fleet_control=True)
    handler.client_address = ("127.0.0.1", 0)
    handler.rfile, handler.wfile = io.BytesIO(raw), io.BytesIO()
    handler.close_connection = True
    handler.handle_one_request()
    return handler.wfile.getvalue()


class FleetServer:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        # Provisions and the fault knobs sleep on these threads, never on the loop.
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="fake-fleet")
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    return
                request_line, _, header_block = head.decode("latin-1").partition("\r\n")
                method, target, _version = (request_line.split(" ") + ["", "", ""])[:3]
                length, close = 0, False
                for line in header_block.split("\r\n"):
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip() or 0)
                    elif name == "connection":
                        close = value.strip().lower() == "close"
                body = await reader.readexactly(length) if length else b""
                instance_id = _health_instance_id(method, target)
                if instance_id is not None:
                    writer.write(await self._health(instance_id))
                else:
                    writer.write(await asyncio.get_running_loop().run_in_executor(self.executor, _dispatch, head + body))
                await writer.drain()
                if close:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _health(self, instance_id: str) -> bytes:
        instance = fake._instances.get(instance_id)
        if instance is None:
            return _response(404, "Not Found", {"error": "not found"})
        latency = fake._health_latency_s()
        if latency:
            await asyncio.sleep(latency)
        return _response(200, "OK", fake.health_payload(instance))


def serve(host: str, port: int, on_listening) -> None:
    """Listen on (host, port; 0 picks one), call `on_listening(port)`, serve until interrupted."""
    async def main() -> None:
        fleet = FleetServer(host, port)
        on_listening(await fleet.start())
        async with fleet.server:
            await fleet.server.serve_forever()

    asyncio.run(main())
