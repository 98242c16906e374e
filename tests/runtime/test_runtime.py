"""End-to-end tests for the local pool-mode runtime (``python -m runtime``).

Each test starts the real server as a subprocess on a free port with its own
data directory, and talks to it over HTTP exactly like the pool manager does.
No Django and no database are involved.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.runtime.harness import TOKEN, Runtime, RuntimeFactory, _wait_for

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
DEV_INVITE = re.compile(r"^https://dev\.convos\.org/v2\?i=[A-Za-z0-9_-]{20,}$")
PROD_INVITE = re.compile(r"^https://popup\.convos\.org/v2\?i=[A-Za-z0-9_-]{20,}$")
JOIN_URL = "https://dev.convos.org/v2?i=someInviteSlug123"


def _identity_md(runtime: Runtime) -> str:
    return (runtime.data_dir / "workspace" / "IDENTITY.md").read_text(encoding="utf-8")


# -- health --------------------------------------------------------------------


def test_it_answers_503_while_booting_then_200(start_runtime: RuntimeFactory) -> None:
    runtime = start_runtime(wait=False, RUNTIME_BOOT_SECONDS="1")
    first = runtime.wait_until_listening()
    assert first.status_code == 503
    assert first.json()["ready"] is False

    # Provisioning is refused until the instance is ready.
    early = runtime.provision()
    assert early.status_code == 503
    assert "error" in early.json()

    runtime.wait_until_ready()
    body = runtime.get("/pool/health", auth=False).json()
    assert body["ready"] is True
    assert body["version"] == "0.1.0"
    assert body["runtime"] == "convos-python"
    assert body["channel"] == "loopback" and body["channelReady"] is True
    assert body["llm"] == {"configured": False, "model": None}  # honest: no key, no model named
    assert body["instanceId"] == "test-instance"


def test_it_writes_a_pid_file_and_never_logs_secrets(start_runtime: RuntimeFactory) -> None:
    runtime = start_runtime(OPENROUTER_API_KEY="sk-or-secret-key")
    pid_file = runtime.data_dir / "runtime.pid"
    assert pid_file.read_text().strip() == str(runtime.proc.pid)
    runtime.provision(instructions="TOP SECRET PERSONA")
    assert runtime.stop() == 0
    log = runtime.log()
    assert "POST /pool/provision 200" in log
    for secret in (TOKEN, "TOP SECRET PERSONA", "sk-or-secret-key"):
        assert secret not in log


# -- auth and routing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/convos/status"), ("POST", "/pool/provision"), ("POST", "/convos/reset")],
)
def test_it_rejects_missing_or_wrong_tokens_with_401(
    shared_runtime: Runtime, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ):
        response = requests.request(
            method, shared_runtime.url + path, headers=headers, json={}, timeout=10
        )
        assert response.status_code == 401, (headers, response.text)
        assert "error" in response.json()
    assert shared_runtime.status()["clean"] is True


def test_it_answers_503_on_authenticated_routes_without_a_gateway_token(
    start_runtime: RuntimeFactory,
) -> None:
    runtime = start_runtime(token=None)
    assert runtime.get("/pool/health", auth=False).status_code == 200
    for response in (
        runtime.get("/convos/status", headers={"Authorization": "Bearer anything"}),
        runtime.post("/pool/provision", headers={"Authorization": "Bearer x"}, json={}),
        runtime.post("/convos/reset", headers={"Authorization": "Bearer x"}),
    ):
        assert response.status_code == 503
        assert response.json() == {"error": "GATEWAY_TOKEN is not configured"}


def test_it_answers_json_404_and_405(shared_runtime: Runtime) -> None:
    missing = shared_runtime.get("/nope")
    assert missing.status_code == 404
    assert "error" in missing.json()

    wrong_method = shared_runtime.post("/pool/health")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    assert shared_runtime.get("/pool/provision").status_code == 405
    assert requests.delete(shared_runtime.url + "/convos/status", timeout=10).status_code == 405


# -- provision -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xmtp_env", "pattern"),
    [("dev", DEV_INVITE), ("staging", DEV_INVITE), ("production", PROD_INVITE)],
)
def test_it_creates_a_conversation_with_an_invite_url(
    start_runtime: RuntimeFactory, xmtp_env: str, pattern: re.Pattern[str]
) -> None:
    runtime = start_runtime(XMTP_ENV=xmtp_env)
    response = runtime.provision(
        agentName="Ada", profileImage="https://example.com/a.png", metadata={"team": "x"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"ok", "inviteUrl", "conversationId", "joined", "status"}
    assert body["ok"] is True
    assert body["status"] == "created"
    assert body["joined"] is False
    assert HEX32.match(body["conversationId"])
    assert pattern.match(body["inviteUrl"]), body["inviteUrl"]

    status = runtime.status()
    assert status["conversationId"] == body["conversationId"]
    assert HEX64.match(status["inboxId"])
    assert status["pending"] is False
    assert status["clean"] is False

    binding = json.loads((runtime.data_dir / "convos" / "binding.json").read_text())
    assert binding["agentName"] == "Ada"
    assert binding["metadata"] == {"team": "x"}
    assert binding["profileImage"] == "https://example.com/a.png"
    assert binding["inviteUrl"] == body["inviteUrl"]


def test_it_refuses_a_second_provision_with_409(runtime: Runtime) -> None:
    first = runtime.provision()
    assert first.status_code == 200
    second = runtime.provision(agentName="Other")
    assert second.status_code == 409
    assert "error" in second.json()
    assert runtime.status()["conversationId"] == first.json()["conversationId"]


def test_it_keeps_the_binding_across_a_restart(start_runtime: RuntimeFactory) -> None:
    first = start_runtime()
    conversation_id = first.provision().json()["conversationId"]
    inbox_id = first.status()["inboxId"]
    pid_file = first.data_dir / "runtime.pid"
    assert pid_file.exists()

    assert first.stop() == 0
    assert not pid_file.exists()

    second = start_runtime(data_dir=first.data_dir)
    assert second.status() == {
        "conversationId": conversation_id,
        "inboxId": inbox_id,
        "pending": False,
        "clean": False,
    }
    assert second.provision().status_code == 409


def test_it_stops_cleanly_on_sigint(runtime: Runtime) -> None:
    runtime.proc.send_signal(signal.SIGINT)
    assert runtime.proc.wait(timeout=10) == 0
    assert not (runtime.data_dir / "runtime.pid").exists()


def test_it_replaces_the_custom_instructions_section_instead_of_duplicating(
    start_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    workspace = tmp_path / "data" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "IDENTITY.md").write_text(
        "# Agent identity\n\nName: Base\n\n"
        "## Tools\nUse the calendar.\n\n"
        "## Custom Instructions\nstale text from an old image\n\n"
        "## Notes\nKeep me.\n"
    )
    runtime = start_runtime()

    # Instructions with their own "## " heading must still be replaced whole.
    assert runtime.provision(instructions="First persona.\n## Sub heading\nfirst detail").ok
    text = _identity_md(runtime)
    assert text.count("## Custom Instructions") == 1
    assert "stale text" not in text
    assert "First persona." in text and "first detail" in text
    assert "Use the calendar." in text and "Keep me." in text
    assert "Name: Test Agent" in text

    reset = runtime.post("/convos/reset", json={})
    assert reset.status_code == 200
    after_reset = _identity_md(runtime)
    assert "## Custom Instructions" not in after_reset
    assert "First persona." not in after_reset
    assert "Use the calendar." in after_reset and "Keep me." in after_reset

    assert runtime.provision(agentName="Second", instructions="Second persona.").ok
    text = _identity_md(runtime)
    assert text.count("## Custom Instructions") == 1
    assert "Second persona." in text
    assert "First persona." not in text and "first detail" not in text
    assert "## Sub heading" not in text
    assert "Use the calendar." in text and "Keep me." in text
    assert "Name: Second" in text


def test_it_creates_identity_md_with_a_base_header(runtime: Runtime) -> None:
    assert runtime.provision(agentName="Nova", instructions="").status_code == 200
    text = _identity_md(runtime)
    assert text.startswith("# Agent identity\n")
    assert "Name: Nova" in text
    assert text.count("## Custom Instructions") == 1


# -- status and reset ------------------------------------------------------------


def test_it_makes_the_instance_clean_on_reset(runtime: Runtime) -> None:
    inbox_id = runtime.status()["inboxId"]
    assert runtime.provision().status_code == 200
    credentials = runtime.data_dir / "credentials"
    credentials.mkdir()
    (credentials / "session.key").write_text("claim secret")
    assert runtime.status()["clean"] is False

    response = runtime.post("/convos/reset")  # body is optional
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["reset"] is True
    assert body["status"] == {
        "conversationId": None,
        "inboxId": inbox_id,
        "pending": False,
        "clean": True,
    }
    assert runtime.status() == body["status"]
    assert not credentials.exists()

    # A reset instance can be claimed again.
    assert runtime.provision().status_code == 200


def test_it_reports_dirty_when_only_credentials_remain(runtime: Runtime) -> None:
    (runtime.data_dir / "credentials" / "nested").mkdir(parents=True)
    assert runtime.status()["clean"] is True  # empty directories hold nothing
    (runtime.data_dir / "credentials" / "nested" / "token").write_text("x")
    assert runtime.status()["clean"] is False


# -- bad requests ----------------------------------------------------------------

VALID = {"agentName": "A", "instructions": ""}


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"instructions": "x"}, "agentName"),
        ({"agentName": "", "instructions": "x"}, "agentName"),
        ({"agentName": "   ", "instructions": "x"}, "agentName"),
        ({"agentName": 42, "instructions": "x"}, "agentName"),
        ({"agentName": "a" * 201, "instructions": "x"}, "agentName"),
        ({"agentName": "A"}, "instructions"),
        ({"agentName": "A", "instructions": ["x"]}, "instructions"),
        ({"agentName": "A", "instructions": "x" * 100_001}, "instructions"),
        ({**VALID, "joinUrl": "https://evil.example/v2?i=x"}, "joinUrl"),
        ({**VALID, "joinUrl": "http://dev.convos.org/v2?i=x"}, "joinUrl"),
        ({**VALID, "joinUrl": "https://dev.convos.org/v2"}, "joinUrl"),
        ({**VALID, "joinUrl": "https://dev.convos.org@evil.example/v2?i=x"}, "joinUrl"),
        # Links the pool used to pass and the instance refused; the pool now refuses them too.
        ({**VALID, "joinUrl": "https://me@dev.convos.org/v2?i=x"}, "joinUrl"),
        ({**VALID, "joinUrl": "https://dev.convos.org:8443/v2?i=x"}, "joinUrl"),
        ({**VALID, "joinUrl": "https://dev.convos.org/v2?i=a&i=b"}, "joinUrl"),
        ({**VALID, "joinUrl": "https://popup.convos.org/v2?i=x"}, "joinUrl"),  # the other environment
        ({**VALID, "joinUrl": "https://dev.convos.org/v2?i=not+a+slug"}, "joinUrl"),
        ({**VALID, "joinUrl": ""}, "joinUrl"),
        ({**VALID, "joinUrl": 7}, "joinUrl"),
        ({**VALID, "profileImage": 1}, "profileImage"),
        ({**VALID, "metadata": ["a"]}, "metadata"),
        ({**VALID, "metadata": {"a": 1}}, "metadata"),
    ],
)
def test_it_rejects_invalid_fields_with_400_naming_the_field(
    shared_runtime: Runtime, body: dict[str, Any], field_name: str
) -> None:
    response = shared_runtime.post("/pool/provision", json=body)
    assert response.status_code == 400, response.text
    assert field_name in response.json()["error"]
    assert shared_runtime.status()["clean"] is True


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"", b"\xff\xfe"])
def test_it_rejects_bodies_that_are_not_json_objects(shared_runtime: Runtime, raw: bytes) -> None:
    response = shared_runtime.post(
        "/pool/provision", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "body" in response.json()["error"]


def test_it_rejects_a_2_mib_body_with_413(shared_runtime: Runtime) -> None:
    response = shared_runtime.post(
        "/pool/provision",
        data=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "error" in response.json()
    # The server is still healthy and untouched afterwards.
    assert shared_runtime.get("/pool/health", auth=False).status_code == 200
    assert shared_runtime.status()["clean"] is True


def test_it_keeps_a_keep_alive_connection_usable_after_refusing_a_body(
    shared_runtime: Runtime,
) -> None:
    # A refused request whose body was never read must not corrupt the next
    # request on the same connection.
    with requests.Session() as session:
        refused = session.post(
            shared_runtime.url + "/pool/provision",
            headers={"Authorization": "Bearer wrong"},
            data=b'{"agentName": "A", "instructions": "GET /pool/health HTTP/1.1"}',
            timeout=10,
        )
        assert refused.status_code == 401
        follow_up = session.get(
            shared_runtime.url + "/convos/status", headers=shared_runtime.auth(), timeout=10
        )
        assert follow_up.status_code == 200
        assert follow_up.json()["clean"] is True


def test_it_treats_an_unreadable_binding_as_dirty_until_reset(
    start_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    convos = tmp_path / "data" / "convos"
    convos.mkdir(parents=True)
    (convos / "binding.json").write_text("{not json")
    runtime = start_runtime()
    status = runtime.status()
    assert status["conversationId"] is None
    assert status["clean"] is False
    assert runtime.provision().status_code == 409
    assert runtime.post("/convos/reset").json()["status"]["clean"] is True
    assert runtime.provision().status_code == 200


# -- joining -----------------------------------------------------------------------


def test_it_joins_an_existing_conversation(runtime: Runtime) -> None:
    response = runtime.provision(joinUrl=JOIN_URL)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "joined"
    assert body["joined"] is True
    assert body["inviteUrl"] == JOIN_URL
    assert HEX32.match(body["conversationId"])
    status = runtime.status()
    assert status["conversationId"] == body["conversationId"]
    assert status["pending"] is False


@pytest.mark.parametrize(
    ("xmtp_env", "link", "canonical"),
    [
        ("dev", "https://dev.convos.org/v2/?i=someInviteSlug123", JOIN_URL),
        ("staging", "convos://join/someInviteSlug123", JOIN_URL),
        ("production", "https://convos.app/join/someInviteSlug123", "https://popup.convos.org/v2?i=someInviteSlug123"),
        ("production", "someInviteSlug123", "https://popup.convos.org/v2?i=someInviteSlug123"),
    ],
)
def test_it_joins_every_convos_form_of_an_invite_by_its_canonical_url(
    start_runtime: RuntimeFactory, xmtp_env: str, link: str, canonical: str
) -> None:
    # The environment is the runtime's own XMTP_ENV; the rule is runtime/invites.py, as in the pool.
    runtime = start_runtime(XMTP_ENV=xmtp_env)
    response = runtime.provision(joinUrl=link)
    assert response.status_code == 200, response.text
    assert response.json()["inviteUrl"] == canonical


def test_it_refuses_an_invite_of_the_other_environment_with_400(start_runtime: RuntimeFactory) -> None:
    runtime = start_runtime(XMTP_ENV="production")
    response = runtime.provision(joinUrl=JOIN_URL)
    assert response.status_code == 400
    assert response.json()["error"].startswith("joinUrl ") and "dev environment" in response.json()["error"]
    assert runtime.status()["clean"] is True


def test_it_reports_pending_acceptance_until_the_owner_accepts(
    start_runtime: RuntimeFactory,
) -> None:
    runtime = start_runtime(RUNTIME_JOIN_PENDING_SECONDS="1", XMTP_ENV="production")
    started = time.monotonic()
    response = runtime.provision(joinUrl="https://popup.convos.org/v2?i=abc")
    body = response.json()
    assert body["status"] == "pending_acceptance"
    assert body["joined"] is False and body["conversationId"] is None
    # Pending has no conversation yet: a pool must not take it as accepted (production's rule).
    assert runtime.status()["pending"] is True and runtime.status()["conversationId"] is None

    assert _wait_for(lambda: runtime.status()["pending"] is False, timeout=5)
    assert time.monotonic() - started >= 0.9
    assert HEX32.match(runtime.status()["conversationId"])


def test_it_creates_without_pending_when_no_join_url(start_runtime: RuntimeFactory) -> None:
    runtime = start_runtime(RUNTIME_JOIN_PENDING_SECONDS="5")
    body = runtime.provision().json()
    assert body["status"] == "created"
    assert runtime.status()["pending"] is False


# -- faults and concurrency --------------------------------------------------------


def test_it_fails_provision_on_demand_and_stays_dirty(start_runtime: RuntimeFactory) -> None:
    runtime = start_runtime(RUNTIME_FAIL_PROVISION="1")
    response = runtime.provision(instructions="left behind")
    assert response.status_code == 500
    assert response.json() == {"error": "simulated provision failure"}

    status = runtime.status()
    assert status["conversationId"] is None
    assert status["clean"] is False
    assert "left behind" in _identity_md(runtime)

    assert runtime.post("/convos/reset", json={}).json()["status"]["clean"] is True


def test_it_lets_exactly_one_of_ten_concurrent_provisions_win(runtime: Runtime) -> None:
    barrier = threading.Barrier(10)

    def claim(index: int) -> int:
        barrier.wait(timeout=10)
        return runtime.provision(agentName=f"Agent {index}").status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = sorted(pool.map(claim, range(10)))

    assert codes == [200] + [409] * 9
    binding = json.loads((runtime.data_dir / "convos" / "binding.json").read_text())
    assert runtime.status()["conversationId"] == binding["conversationId"]
    assert _identity_md(runtime).count("## Custom Instructions") == 1


# --- claim-time credentials (POST /pool/credentials) ------------------------------------------------
def test_it_keeps_claim_credentials_until_a_reset(runtime: Runtime) -> None:
    path = "/pool/credentials"
    assert runtime.post(path, auth=False, json={"set": {"AGENTMAIL_API_KEY": "am-secret"}}).status_code == 401
    answer = runtime.post(path, json={"set": {"AGENTMAIL_API_KEY": "am-secret", "AGENTMAIL_INBOX_ID": "i1"}})
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "names": ["AGENTMAIL_API_KEY", "AGENTMAIL_INBOX_ID"]}
    assert "am-secret" not in answer.text
    stored = runtime.data_dir / "credentials" / "env.json"
    assert stored.stat().st_mode & 0o077 == 0  # only the runtime's user can read it
    assert runtime.get("/convos/status").json()["clean"] is False
    assert runtime.post(path, json={"remove": ["AGENTMAIL_INBOX_ID"]}).json()["names"] == ["AGENTMAIL_API_KEY"]
    bad = runtime.post(path, json={"set": {"lower": "x"}})
    assert bad.status_code == 400 and "set.lower" in bad.json()["error"]
    runtime.post("/convos/reset", json={})
    assert not stored.exists()
    assert runtime.get("/convos/status").json()["clean"] is True
    runtime.stop()
    assert "am-secret" not in runtime.log()


def test_it_updates_name_and_instructions_of_a_bound_instance(runtime: Runtime) -> None:
    bound = runtime.provision(instructions="Old persona.")
    answer = runtime.post("/pool/update", json={"agentName": "Renamed", "instructions": "New persona."})
    assert answer.status_code == 200 and answer.json()["status"]["conversationId"] == bound.json()["conversationId"]
    identity = _identity_md(runtime)
    assert "New persona." in identity and "Old persona." not in identity and identity.count("## Custom Instructions") == 1
    assert runtime.post("/pool/update", json={"agentName": 5, "instructions": "x"}).status_code == 400
    assert runtime.post("/pool/update", auth=False, json={"agentName": "a", "instructions": "b"}).status_code == 401
