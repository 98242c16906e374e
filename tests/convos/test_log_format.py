"""LOG_FORMAT=json: one JSON object per line, with the request id and instance id when known, and
secrets redacted as in the text format."""
from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from convos.log_format import JsonFormatter, instance_context
from convos.log_redaction import RedactSecretsFilter
from convos.request_id import RequestIdMiddleware

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def captured():
    """A handler as settings' LOGGING builds it for LOG_FORMAT=json, on a logger of its own."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger(f"tests.json.{secrets.token_hex(4)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield logger, lines
    logger.removeHandler(handler)


def test_it_prints_one_json_object_per_line(captured):
    logger, lines = captured
    logger.info("created %s", "inst-1", extra={"instance_id": "inst-1"})
    with instance_context("inst-2"):
        logger.warning("two\nlines")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    first, second, third = lines()
    assert first["message"] == "created inst-1" and first["level"] == "INFO" and first["instance_id"] == "inst-1"
    assert first["logger"] == logger.name and first["time"].endswith("Z")
    assert "request_id" not in first
    assert second["message"] == "two\nlines" and second["instance_id"] == "inst-2"
    assert third["level"] == "ERROR" and "ValueError: boom" in third["exc"]


def test_it_takes_the_request_id_from_the_header(captured):
    logger, lines = captured

    def view(request):
        logger.info("inside")
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    response = middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-abc.123"))
    assert response["X-Request-ID"] == "req-abc.123"
    generated = middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="not a sane\nid"))["X-Request-ID"]
    assert len(generated) == 32 and generated != "req-abc.123"
    logger.info("outside")
    inside, inside_generated, outside = lines()
    assert inside["request_id"] == "req-abc.123"
    assert inside_generated["request_id"] == generated
    assert "request_id" not in outside


@pytest.mark.django_db
def test_it_answers_every_request_with_its_id(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-1")["X-Request-ID"] == "abc-1"
    assert len(client.get("/healthz")["X-Request-ID"]) == 32


def test_it_redacts_a_secret_in_the_json_line(captured, settings):
    logger, lines = captured
    token = secrets.token_hex(24)
    logger.error("provider refused Authorization: Bearer %s", token)
    logger.error("key %s", settings.POOL_API_KEY)
    # A record that bypassed the record factory and the filter: the formatter redacts it too.
    bare = logging.makeLogRecord({"name": "x", "levelno": logging.ERROR, "levelname": "ERROR",
                                  "msg": "Bearer %s", "args": (token,)})
    output = lines() + [json.loads(JsonFormatter().format(bare))]
    assert all("[redacted]" in line["message"] for line in output)
    text = json.dumps(output)
    assert token not in text and settings.POOL_API_KEY not in text


def test_it_is_what_a_process_prints_with_log_format_json():
    token = f"sk-or-v1-{secrets.token_hex(24)}"
    script = f"import logging; logging.getLogger('pool_app.x').warning('answer had %s', {token!r})"
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT,
                          env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    entry = next(e for e in entries if e["logger"] == "pool_app.x")
    assert entry["level"] == "WARNING" and entry["message"] == "answer had [redacted]"
    assert token not in done.stderr
