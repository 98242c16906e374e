"""Bad input gets a 4xx naming the field; never a 500, and never an instance taken."""
from __future__ import annotations

import json

import pytest

from pool_app.models import Instance, InstanceStatus
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
CLAIM = "/api/pool/claim"


@pytest.fixture
def idle_instance():
    return Instance.objects.create(status=InstanceStatus.IDLE, url="http://127.0.0.1:9")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"runtime": "nonsense"}, "runtime"),  # production's runtime field: openclaw | hermes (| this runtime)
        ({"metadata": {"k": 5}}, "metadata"),
        ({"metadata": ["k"]}, "metadata"),
        ({"profileImage": "not a url"}, "profileImage"),
        ({"source": "x" * 65}, "source"),
        ({"agentName": 123, "instructions": "x"}, "agentName"),
        ({"agentName": ["a"], "instructions": "x"}, "agentName"),
        ({"agentName": "a", "instructions": {"x": 1}}, "instructions"),
        ({"agentName": "a", "instructions": None}, "instructions"),
        ({"agentName": "a" * 201, "instructions": "x"}, "agentName"),
        ({"agentName": "a", "instructions": "x" * (1024 * 1024)}, "instructions"),
        ({"agentName": "a", "instructions": "x", "joinUrl": 5}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "https://example.com/v2?i=abc"}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "https://popup.convos.org/v2?i=abc"}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "https://dev.convos.org/v2"}, "joinUrl"),
        # Links the instance refuses must not pass the pool either (they cost a reset and a 502).
        ({"agentName": "a", "instructions": "x", "joinUrl": "https://dev.convos.org/v2/?i=a&i=b"}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "https://me@dev.convos.org/v2?i=abc"}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "https://dev.convos.org:8443/v2?i=abc"}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "javascript:alert(1)"}, "joinUrl"),
        ({"agentName": "a", "instructions": "x", "joinUrl": "x" * 495}, "joinUrl"),  # too long once canonical
    ],
)
def test_it_answers_400_naming_the_field(api, idle_instance, body, field):
    response = api.post(CLAIM, body, format="json")
    assert response.status_code == 400, response.content[:300]
    payload = response.json()
    assert field in payload["error"]
    assert field in payload["fields"]
    idle_instance.refresh_from_db()
    assert idle_instance.status == InstanceStatus.IDLE


@pytest.mark.parametrize("raw", [b"not json", b"{", b"[1, 2]", b'"a string"', b"null", b"\xff\xfe"])
def test_it_answers_400_to_bodies_that_are_not_a_json_object(api, idle_instance, raw):
    response = api.generic("POST", CLAIM, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]
    idle_instance.refresh_from_db()
    assert idle_instance.status == InstanceStatus.IDLE


def test_it_answers_415_to_a_form_body(api):
    response = api.post(CLAIM, {"agentName": "a", "instructions": "b"})  # multipart
    assert response.status_code == 415
    assert "error" in response.json()


def test_it_answers_413_to_a_body_over_the_upload_limit(api, settings, idle_instance):
    body = json.dumps({"agentName": "a", "instructions": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = api.generic("POST", CLAIM, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"error": f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes", "code": "too_large"}
    idle_instance.refresh_from_db()
    assert idle_instance.status == InstanceStatus.IDLE


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc", "Bearer", "Token x"])
def test_it_answers_401_with_json_without_a_valid_key(anon_api, header):
    if header:
        anon_api.credentials(HTTP_AUTHORIZATION=header)
    for method, path in (("post", CLAIM), ("get", "/api/pool/status")):
        response = getattr(anon_api, method)(path, {}, format="json")
        assert response.status_code == 401, (method, path, header)
        assert response.json()["error"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_answers_503_with_a_message_when_nothing_is_idle(api):
    Instance.objects.create(status=InstanceStatus.STARTING)
    response = api.post(CLAIM, {"agentName": "a", "instructions": "b"}, format="json")
    assert response.status_code == 503
    assert "No idle instance" in response.json()["error"]
    assert response["Retry-After"] == "2"  # a client may retry safely, and knows when


def test_it_healthz_needs_no_key(anon_api):
    response = anon_api.get("/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert set(response.json()["databases"]) == set(ALL_DATABASES)


def test_it_unknown_api_paths_answer_json_404(api):
    response = api.get("/api/pool/nope")
    assert response.status_code == 404
    assert response.json()["error"]


@pytest.mark.parametrize("path", ["/api/pool/claim", "/api/templates", "/api/pool/instances/abcdefghijkl/clone"])
@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"agentName": "a", "userConfig": ' + b'{"a": ' * 40 + b"1" + b"}" * 41])
def test_it_answers_400_to_json_nested_too_deeply(api, idle_instance, path, raw):
    # Finding 14.7: 100,000 `[` made json raise RecursionError, which answered 500.
    response = api.generic("POST", path, raw, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert "nested more than" in response.json()["error"]
    assert Instance.objects.get(pk=idle_instance.pk).status == InstanceStatus.IDLE
