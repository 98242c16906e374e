"""Calls to instances never follow redirects (finding 14.7: blind SSRF from a compromised instance)."""
import pytest
import responses

from services_app import runtime_client

INSTANCE = "http://instance.test"


@responses.activate
def test_it_a_redirect_from_an_instance_is_an_error_and_is_not_followed():
    responses.add(responses.GET, f"{INSTANCE}/convos/status", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    inside = responses.add(responses.GET, "http://169.254.169.254/latest/meta-data", body="secret")
    with pytest.raises(runtime_client.RuntimeCallError, match="redirect"):
        runtime_client.convos_status(INSTANCE, token="gateway-token", timeout=5)
    assert inside.call_count == 0


@responses.activate
def test_it_a_health_check_answered_with_a_redirect_is_not_healthy():
    responses.add(responses.GET, f"{INSTANCE}/pool/health", status=301, headers={"Location": "http://elsewhere.test/pool/health"})
    elsewhere = responses.add(responses.GET, "http://elsewhere.test/pool/health", json={"ready": True})
    assert runtime_client.health(INSTANCE, timeout=5) is False
    assert elsewhere.call_count == 0


@responses.activate
def test_it_never_carries_one_instance_s_cookie_to_another():
    """Calls reuse one session per thread (keep-alive); its jar must keep nothing an instance sets."""
    # Local instances share a host and differ by port, which cookies ignore.
    first, other = "http://127.0.0.1:8001", "http://127.0.0.1:8002"
    responses.add(responses.GET, f"{first}/convos/status", json={"ok": True}, headers={"Set-Cookie": "session=from-a; Path=/"})
    second = responses.add(responses.GET, f"{other}/convos/status", json={"ok": True})
    runtime_client.convos_status(first, token="gateway-token", timeout=5)
    runtime_client.convos_status(other, token="gateway-token", timeout=5)
    assert "Cookie" not in second.calls[0].request.headers
    assert len(runtime_client._session().cookies) == 0


def test_it_starts_a_fresh_session_after_a_fork_like_pid_change(monkeypatch):
    first = runtime_client._session()
    assert runtime_client._session() is first  # reused within a thread: keep-alive
    real_pid = runtime_client.os.getpid()
    monkeypatch.setattr(runtime_client.os, "getpid", lambda: real_pid + 100_000)
    child = runtime_client._session()
    assert child is not first
    assert len(child.cookies) == 0 and child.cookies._policy is first.cookies._policy  # the same no-cookie rule
