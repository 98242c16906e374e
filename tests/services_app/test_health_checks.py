"""services_app/health_checks.py: batched async health checks against small local HTTP servers."""
from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services_app import health_checks
from services_app.runtime_client import is_healthy_answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        # /<behaviour>/pool/health
        behaviour = self.path.split("/")[1]
        status, body = 200, json.dumps({"ready": True}).encode()
        if behaviour == "notready":
            body = json.dumps({"ready": False}).encode()
        elif behaviour == "truthy":
            body = json.dumps({"ready": "yes"}).encode()
        elif behaviour == "down":
            status, body = 503, json.dumps({"ready": True}).encode()
        elif behaviour == "html":
            body = b"<html>ok</html>"
        elif behaviour == "redirect":
            status, body = 302, b""
        elif behaviour.startswith("slow"):
            time.sleep(float(behaviour[4:]))
        elif behaviour == "drops":  # answers, then drops the kept-alive connection (an idle timeout)
            self.close_connection = True
        elif behaviour == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\n{\"rea\r\n9\r\ndy\": true\r\n1\r\n}\r\n0\r\n\r\n")
            return
        try:
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/ok/pool/health")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def __init__(self):
        self.accepted = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        request = super().get_request()
        self.accepted += 1  # one per TCP connection the client opened
        return request

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(server, behaviour: str) -> str:
    return f"http://127.0.0.1:{server.server_port}/{behaviour}"


def _check(urls, **kwargs):
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("deadline_s", 5.0)
    kwargs.setdefault("concurrency", 8)
    return health_checks.check_batch(urls, **kwargs)


def test_it_answers_true_for_a_ready_instance_and_false_for_every_other_answer(server):
    behaviours = ["ok", "notready", "truthy", "down", "html", "redirect"]
    assert _check([_url(server, b) for b in behaviours]) == [True, False, False, False, False, False]


def test_it_shares_one_health_rule_with_runtime_client():
    assert is_healthy_answer(200, b'{"ready": true, "runtime": "fake"}') is True
    assert is_healthy_answer(200, b'{"ready": false}') is False
    assert is_healthy_answer(200, b'[{"ready": true}]') is False
    assert is_healthy_answer(200, b"\xff\xfe not json") is False
    assert is_healthy_answer(503, b'{"ready": true}') is False
    assert is_healthy_answer(301, b'{"ready": true}') is False


def test_it_counts_a_refused_connection_as_unhealthy():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert _check([f"http://127.0.0.1:{port}"]) == [False]


def test_it_gives_up_on_a_slow_instance_after_the_per_check_timeout(server):
    started = time.monotonic()
    assert _check([_url(server, "slow3"), _url(server, "ok")], timeout=0.3, deadline_s=5) == [False, True]
    assert time.monotonic() - started < 2


def test_it_returns_at_the_batch_deadline_with_the_rest_unknown_as_false(server):
    # 1 check at a time, each answering after 0.2 s: the 1 s deadline leaves most unchecked.
    urls = [_url(server, "slow0.2") for _ in range(20)]
    started = time.monotonic()
    results = _check(urls, timeout=5, deadline_s=1.0, concurrency=1)
    elapsed = time.monotonic() - started
    assert elapsed < 2
    assert 1 <= sum(results) <= 6 and results[-1] is False and results[0] is True


def test_it_reuses_keep_alive_connections_across_two_batches(server):
    urls = [_url(server, "ok") for _ in range(40)]
    assert _check(urls, concurrency=4) == [True] * 40
    first = server.accepted
    assert 1 <= first <= 4  # bounded by the concurrency, not one per check
    assert _check(urls, concurrency=4) == [True] * 40
    assert server.accepted == first  # the second batch opened no new connection


def test_it_starts_a_fresh_client_after_a_fork_like_pid_change(server, monkeypatch):
    assert _check([_url(server, "ok")], concurrency=2) == [True]
    before = health_checks._checker
    real_pid = health_checks.os.getpid()
    monkeypatch.setattr(health_checks.os, "getpid", lambda: real_pid + 100_000)
    assert _check([_url(server, "ok")], concurrency=2) == [True]
    after = health_checks._checker
    assert after is not before and after.key.pid == real_pid + 100_000 and after.thread is not before.thread
    assert before.thread.is_alive()  # the "parent's" checker was left alone, never closed from the "child"
    monkeypatch.undo()
    before.close()  # (in this test the "parent" is us: tidy up its loop thread)


def test_it_never_raises_on_a_malformed_url():
    assert _check(["not a url", "http://[bad"]) == [False, False]


def test_it_checks_fake_provider_instances_over_http(settings):
    import uuid

    from services_app.providers.fake import FakeProvider

    settings.FAKE_HEALTH_LATENCY_MS = 20
    provider = FakeProvider()
    refs = [provider.create(instance_id=f"hc-{uuid.uuid4().hex[:10]}", variables={}) for _ in range(30)]
    try:
        started = time.monotonic()
        gone = refs[0].url.replace("/i/hc-", "/i/gone-")  # the fake server answers 404 for it
        assert _check([r.url for r in refs] + [gone], concurrency=30) == [True] * 30 + [False]
        assert time.monotonic() - started < 1.5  # 30 x 20 ms concurrently, not one after another
    finally:
        for ref in refs:
            provider.destroy(ref)


def test_it_reads_a_chunked_answer(server):
    assert _check([_url(server, "chunked")]) == [True]


def test_it_retries_once_on_a_fresh_connection_when_the_kept_alive_one_was_dropped(server):
    urls = [_url(server, "drops") for _ in range(6)]
    assert _check(urls, concurrency=2) == [True] * 6
    assert _check(urls, concurrency=2) == [True] * 6
