"""Public reads (issue 12, item 2): `/api/pool/counts`, `/api/pool/info` and `/version` answer
without a key, as the production pool's clients expect; CORS opens the pool API, and only it, to
the configured origins."""
from __future__ import annotations

from contextlib import ExitStack

import pytest
from django.db import OperationalError, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from pool_app import selectors
from pool_app.models import Instance, InstanceStatus as S
from pool_app.services.api_clients import api_client_create
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

ALLOWED = "https://pool.example.org"
OTHER = "https://evil.example.com"


@pytest.fixture
def cors(settings) -> None:
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]


def _make(status: str, n: int, **fields) -> None:
    for _ in range(n):
        Instance.objects.create(status=status, **fields)


def _preflight(client: APIClient, path: str, origin: str):
    return client.options(
        path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )


# --- counts -------------------------------------------------------------------------------------------
def test_it_counts_answer_without_a_key_with_every_live_status(anon_api):
    _make(S.IDLE, 3)
    _make(S.STARTING, 2)
    _make(S.CLAIMED, 1, owner_id="acme", agent_name="Private")
    _make(S.CRASHED, 1, owner_id="other")
    _make(S.DELETED, 4)  # torn down: not part of the pool

    response = anon_api.get("/api/pool/counts")

    assert response.status_code == 200
    expected = {status: 0 for status in S.values if status != S.DELETED}
    expected.update({S.IDLE: 3, S.STARTING: 2, S.CLAIMED: 1, S.CRASHED: 1})
    # Flat, like production's (its landing page reads c.idle, c.starting, c.claimed, c.crashed).
    assert response.json() == expected
    assert "Private" not in response.content.decode() and "acme" not in response.content.decode()


def test_it_counts_ignore_a_bad_key_and_a_clients_rate_limit(anon_api):
    """A browser may send a stale Authorization header; a public read must not become a 401 or a 429."""
    _make(S.IDLE, 1)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-key")
    assert bad.get("/api/pool/counts").status_code == 200

    limited = APIClient()
    limited.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client_create(name='Slow', owner_id='slow', rate_limit_per_minute=1).key}")
    assert [limited.get("/api/pool/counts").status_code for _ in range(3)] == [200, 200, 200]


def test_it_counts_run_in_one_query_on_the_pool_alias_and_none_elsewhere(anon_api):
    _make(S.IDLE, 5)
    _make(S.CLAIMED, 5)
    others = [alias for alias in ALL_DATABASES if alias != "pool"]
    with ExitStack() as stack:
        pool = stack.enter_context(CaptureQueriesContext(connections["pool"]))
        elsewhere = [stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in others]
        response = anon_api.get("/api/pool/counts")
    assert response.status_code == 200
    assert len(pool.captured_queries) == 1, pool.captured_queries
    assert "GROUP BY" in pool.captured_queries[0]["sql"].upper()
    assert [len(c.captured_queries) for c in elsewhere] == [0] * len(others)


def test_it_counts_answer_503_not_500_when_the_database_is_away(anon_api, monkeypatch):
    def unavailable() -> dict:
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "pool_counts", unavailable)
    response = anon_api.get("/api/pool/counts")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


# --- info and version ---------------------------------------------------------------------------------
def test_it_info_has_productions_fields_plus_runtimes_and_version(anon_api, settings):
    settings.XMTP_ENV = "production"
    settings.POOL_GIT_BRANCH = "main"
    settings.POOL_RAILWAY_SERVICE_ID = "svc-123"
    settings.POOL_RUNTIME_KIND = "convos-python"
    settings.POOL_VERSION = "abc1234"
    with CaptureQueriesContext(connections["pool"]) as pool:
        response = anon_api.get("/api/pool/info")
    assert response.status_code == 200
    assert response.json() == {
        "environment": "production", "branch": "main", "railwayServiceId": "svc-123",
        "runtimeTypes": ["convos-python"], "version": "abc1234",
    }
    assert pool.captured_queries == []


def test_it_version_answers_like_production_from_the_same_source_as_info(anon_api, settings):
    settings.XMTP_ENV = "dev"
    settings.POOL_VERSION = "deadbeef"
    response = anon_api.get("/version")
    assert response.status_code == 200
    assert response.json() == {"version": "deadbeef", "environment": "dev"}
    assert anon_api.get("/api/pool/info").json()["version"] == response.json()["version"]


# --- CORS ---------------------------------------------------------------------------------------------
def test_it_a_preflight_from_an_allowed_origin_gets_the_cors_headers(anon_api, cors):
    response = _preflight(anon_api, "/api/pool/claim", ALLOWED)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    allowed_headers = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed_headers
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_it_a_public_read_from_an_allowed_origin_is_readable(anon_api, cors):
    response = anon_api.get("/api/pool/counts", HTTP_ORIGIN=ALLOWED)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED


def test_it_a_disallowed_origin_gets_no_cors_headers(anon_api, cors):
    for response in (_preflight(anon_api, "/api/pool/claim", OTHER), anon_api.get("/api/pool/counts", HTTP_ORIGIN=OTHER)):
        assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_it_no_origin_is_allowed_by_default(anon_api, settings):
    settings.CORS_ALLOWED_ORIGINS = []
    response = _preflight(anon_api, "/api/pool/claim", ALLOWED)
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("path", ["/admin/login/", "/services/status/batch", "/services/registry", "/version"])
def test_it_admin_services_and_other_routes_never_get_cors_headers(anon_api, cors, path):
    for response in (_preflight(anon_api, path, ALLOWED), anon_api.get(path, HTTP_ORIGIN=ALLOWED)):
        assert not any(name.lower().startswith("access-control-") for name in response.headers), path
