"""Fixtures for the provider and plugin tests: the HTTP layer is faked, back-off never sleeps."""
from __future__ import annotations

import uuid

import pytest
import responses

from services_app import health_checks, runtime_client
from services_app.plugins import http


class FakeClock:
    """A monotonic clock whose `sleep` only moves time on (rate limits and back-off, no waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _health_checks_through_requests(monkeypatch) -> None:
    """`responses` fakes `requests` only: send status_batch's health checks (asyncio, see
    services_app/health_checks.py) through runtime_client.health, so the registered answers serve."""
    monkeypatch.setattr(health_checks, "check_batch",
                        lambda urls, *, timeout=5.0, **_: [runtime_client.health(u, timeout=timeout) for u in urls])


@pytest.fixture
def rsps(monkeypatch):
    """Faked HTTP where not every registered response has to be used."""
    _health_checks_through_requests(monkeypatch)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def mocked(monkeypatch):
    """Every request must match a registered response (unmatched ones fail the test)."""
    _health_checks_through_requests(monkeypatch)
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The back-off delays the plugins' HTTP helper asked for, instead of sleeping them."""
    delays: list[float] = []
    monkeypatch.setattr(http, "sleep", delays.append)
    return delays


def services_on_railway(settings) -> str:
    """Point services at the Railway stand-in's API (a fresh URL: a fresh process-wide client);
    returns that URL for FakeRailway."""
    api = f"https://railway-{uuid.uuid4().hex[:8]}.test/graphql/v2"
    settings.INFRA_PROVIDER = "railway"
    settings.RAILWAY_API_URL = api
    settings.RAILWAY_API_TOKENS = ["tok-a"]
    settings.RAILWAY_WORKSPACE_ID = "ws-1"
    settings.RAILWAY_PROJECT_CREATE_INTERVAL_S = 0
    return api
