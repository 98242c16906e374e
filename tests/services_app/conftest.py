"""Fixtures for the provider and plugin tests: the HTTP layer is faked, back-off never sleeps."""
from __future__ import annotations

import pytest
import responses

from services_app.plugins import http


@pytest.fixture
def mocked():
    """Every request must match a registered response (unmatched ones fail the test)."""
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The back-off delays the plugins' HTTP helper asked for, instead of sleeping them."""
    delays: list[float] = []
    monkeypatch.setattr(http, "sleep", delays.append)
    return delays
