"""PostgreSQL going away and coming back (issue 11, item 3), without touching the machine's server.

A TCP proxy in the test sits between Django and the real PostgreSQL on the `pool` alias; cutting
it drops every open connection and refuses new ones (it accepts and closes at once), as a database
that restarts or a network that fails would. Requests go to the live server, so Django's own
per-request connection handling (request_started/finished, CONN_HEALTH_CHECKS) is what runs: while
cut, /healthz names the alias and a claim answers 503 with Retry-After; once restored the same
client gets 200, with no restart.
"""
from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connections

from pool_app.models import Instance, InstanceStatus as S
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, databases=ALL_DATABASES)]


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to `upstream` until `cut()`; `restore()` forwards again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.up = True
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # a database that is down: the connection ends before any answer
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        self.up = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


@pytest.fixture
def pool_through_proxy(postgres_only) -> Iterator[CuttableProxy]:
    """The `pool` alias connects through a CuttableProxy. Its settings dict is shared by every
    thread's connection (the live server's too), so it is changed in place, then put back."""
    db = connections["pool"].settings_dict
    original = (db["HOST"], db["PORT"])
    proxy = CuttableProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    connections["pool"].close()
    db["HOST"], db["PORT"] = "127.0.0.1", proxy.port
    try:
        yield proxy
    finally:
        proxy.close()
        connections["pool"].close()
        db["HOST"], db["PORT"] = original
        connections["pool"].close()


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    return FakeServices().install(monkeypatch)


def _claim(session: requests.Session, url: str) -> requests.Response:
    return session.post(f"{url}/api/pool/claim", json={"agentName": "agent"}, timeout=60)


def test_it_answers_503_while_the_pool_database_is_cut_and_200_once_it_is_back(pool_through_proxy, fake, live_server):
    for _ in range(2):
        fake.create_instance(Instance.objects.create(status=S.IDLE, deploy_status="healthy").pk)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {django_settings.POOL_API_KEY}"
    assert session.get(f"{live_server.url}/healthz", timeout=60).status_code == 200
    assert _claim(session, live_server.url).status_code == 200  # a connection through the proxy works

    pool_through_proxy.cut()

    health = session.get(f"{live_server.url}/healthz", timeout=60)
    assert health.status_code == 503
    body = health.json()
    assert body["ok"] is False
    assert body["databases"]["pool"].startswith("unreachable: ")
    assert {alias: state for alias, state in body["databases"].items() if alias != "pool"} == {
        "default": "ok", "services": "ok", "templates": "ok"}
    claim = _claim(session, live_server.url)
    assert claim.status_code == 503, claim.text
    assert claim.json()["code"] == "database_unavailable"
    assert int(claim.headers["Retry-After"]) > 0
    assert "Traceback" not in claim.text

    pool_through_proxy.restore()

    assert session.get(f"{live_server.url}/healthz", timeout=60).json() == {
        "ok": True, "databases": {"default": "ok", "pool": "ok", "services": "ok", "templates": "ok"}}
    again = _claim(session, live_server.url)
    assert again.status_code == 200, again.text
    # This test's own connection broke with the cut too, and a test has no request boundary to
    # drop it (the Celery worker does it before each task: Celery's Django fixup).
    connections["pool"].close_if_unusable_or_obsolete()
    assert Instance.objects.filter(status=S.CLAIMED).count() == 2  # nothing was lost or taken twice


def test_it_names_no_credentials_when_a_database_is_unreachable(pool_through_proxy, live_server):
    password = secrets.token_hex(12)
    db = connections["pool"].settings_dict
    original_password = db.get("PASSWORD")
    db["PASSWORD"] = password
    pool_through_proxy.cut()
    try:
        health = requests.get(f"{live_server.url}/healthz", timeout=60)
        claim = requests.post(f"{live_server.url}/api/pool/claim", json={"agentName": "a"}, timeout=60,
                              headers={"Authorization": f"Bearer {django_settings.POOL_API_KEY}"})
    finally:
        db["PASSWORD"] = original_password
    assert health.status_code == 503 and claim.status_code == 503
    for text in (health.text, claim.text):
        assert password not in text
        assert str(pool_through_proxy.port) not in text and db["USER"] not in text


def test_it_plain_django_views_answer_503_for_a_database_error_and_500_for_others(rf):
    from django.db import OperationalError

    from convos.exceptions import json_server_error

    try:
        raise OperationalError("connection failed")
    except OperationalError:
        response = json_server_error(rf.get("/"))  # Django calls handler500 inside its `except`
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    try:
        raise ValueError("a bug")
    except ValueError:
        assert json_server_error(rf.get("/")).status_code == 500
