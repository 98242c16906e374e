"""GET /metrics: Prometheus text exposition, merged across processes (multiprocess mode), with the
pool's scrape-time series, behind METRICS_TOKEN when one is set."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from convos.metrics import PROVIDER_CALLS
from pool_app.models import Instance, InstanceStatus as S
from pool_app.services import pool_tick
from tests.conftest import ALL_DATABASES
from tests.pool_app.fake_services import FakeServices

ROOT = Path(__file__).resolve().parents[2]


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"].startswith("text/plain")
    return _samples(response.content.decode())


@pytest.fixture
def fake(monkeypatch, settings, pool_work_inline) -> FakeServices:
    settings.POOL_MIN_IDLE = 0
    settings.POOL_MAX_TOTAL = 7
    settings.METRICS_TOKEN = ""
    return FakeServices().install(monkeypatch)


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_exposes_the_pool_series_after_a_tick_and_a_claim(fake, client):
    for _ in range(2):
        row = Instance.objects.create(status=S.IDLE, deploy_status="healthy")
        fake.create_instance(row.pk)
    before = _scrape(client)

    pool_tick()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}")
    answer = api.post("/api/pool/claim", {"agentName": "agent", "instructions": "Be helpful."}, format="json")
    assert answer.status_code == 200, answer.content
    after = _scrape(client)

    assert _value(after, "convos_pool_instances", status="idle") == 1
    assert _value(after, "convos_pool_instances", status="claimed") == 1
    assert _value(after, "convos_pool_instances", status="dead") == 0
    assert _value(after, "convos_pool_idle_target") == 0
    assert _value(after, "convos_pool_max_total") == 7
    assert _value(after, "convos_pool_outage") == 0
    assert _value(after, "convos_pool_database_up") == 1
    assert _value(after, "convos_pool_last_tick_timestamp_seconds") > 0
    for name, labels in [("convos_pool_tick_duration_seconds_count", {}),
                         ("convos_pool_claims_total", {"outcome": "claimed"}),
                         ("convos_pool_claim_pool_seconds_count", {"outcome": "claimed"}),
                         ("convos_pool_claim_provision_seconds_count", {"outcome": "ok"})]:
        assert _value(after, name, **labels) == _value(before, name, **labels) + 1, name


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_counts_a_refused_claim_by_its_code(fake, client):
    before = _value(_scrape(client), "convos_pool_claims_total", outcome="no_idle_instance")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {django_settings.POOL_API_KEY}")
    assert api.post("/api/pool/claim", {"agentName": "a", "instructions": "b"}, format="json").status_code == 503
    assert _value(_scrape(client), "convos_pool_claims_total", outcome="no_idle_instance") == before + 1


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_wants_the_token_when_one_is_set(settings, client):
    token = secrets.token_hex(16)
    settings.METRICS_TOKEN = token
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {secrets.token_hex(16)}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {token}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_merges_the_values_of_every_process(settings, client):
    settings.METRICS_TOKEN = ""
    provider = f"merge-{secrets.token_hex(4)}"
    PROVIDER_CALLS.labels(provider, "op").inc(2)
    # Another process (a Celery worker, another gunicorn worker) counting into the same directory.
    script = f"from convos.metrics import PROVIDER_CALLS; PROVIDER_CALLS.labels({provider!r}, 'op').inc(3)"
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _value(_scrape(client), "convos_pool_provider_calls_total", provider=provider, operation="op") == 5
