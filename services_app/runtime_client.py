"""HTTP calls from services to an instance's pool-mode server (reference section 1)."""
from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import threading
from typing import Any

import requests

logger = logging.getLogger(__name__)


class RuntimeCallError(Exception):
    """An instance call failed; `status_code` is the instance's HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _call(method: str, url: str, *, token: str | None, timeout: float, json_body: dict | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # Never follow a redirect: an instance is only ever asked at its own URL, and a compromised
        # one must not point services' requests (with its headers) anywhere else.
        response = _session().request(method, url, json=json_body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout as exc:
        raise RuntimeCallError(f"{method} {_path(url)} timed out after {timeout:g}s") from exc
    except requests.RequestException as exc:
        raise RuntimeCallError(f"{method} {_path(url)} failed: {exc.__class__.__name__}") from exc
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if 300 <= response.status_code < 400:
        raise RuntimeCallError(f"{method} {_path(url)} answered a redirect ({response.status_code}), which is not followed",
                               status_code=response.status_code)
    if response.status_code >= 400:
        detail = payload.get("error") if isinstance(payload, dict) else None
        raise RuntimeCallError(
            f"{method} {_path(url)} answered {response.status_code}" + (f": {detail}" if detail else ""),
            status_code=response.status_code,
        )
    if not isinstance(payload, dict):
        raise RuntimeCallError(f"{method} {_path(url)} answered a body that is not a JSON object", status_code=response.status_code)
    return payload


def _path(url: str) -> str:
    # Messages name the route, not the host: they reach operators and API clients.
    return "/" + url.split("/", 3)[-1] if url.count("/") >= 3 else url


_local = threading.local()
# Every instance is another customer's: nothing one answers may ride along to the next. Local
# instances all live on 127.0.0.1 (cookies ignore ports), so a shared jar would carry instance A's
# Set-Cookie to instance B; this policy stores no cookie at all.
_NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])


def _session() -> requests.Session:
    # One session per thread, its keep-alive connections reused across calls: a claim's provision
    # and the tick's calls no longer open a connection and build a session each (adapters, an
    # environment scan), which was most of a call's CPU.
    # Keyed by process too: a thread that forks keeps its thread-locals in the child, and a child
    # must never write on its parent's sockets.
    if getattr(_local, "pid", None) != os.getpid():
        session = requests.Session()
        session.cookies.set_policy(_NO_COOKIES)
        _local.session, _local.pid = session, os.getpid()
    return _local.session


def is_healthy_answer(status_code: int, body: bytes | str) -> bool:
    """THE health rule (also used by services_app/health_checks.py): HTTP 200 with a JSON object
    whose `ready` is exactly true. A redirect, an error status or any other body is not healthy."""
    if status_code != 200:
        return False
    try:
        payload = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return False
    return isinstance(payload, dict) and payload.get("ready") is True


def health(base_url: str, *, timeout: float) -> bool:
    try:
        response = _session().get(f"{base_url}/pool/health", timeout=timeout, allow_redirects=False)
        return is_healthy_answer(response.status_code, response.content)
    except requests.RequestException:
        return False


def runtime_of(base_url: str, *, timeout: float) -> str | None:
    """The runtime kind the instance's /pool/health reports (`runtime`), or None without an answer."""
    try:
        response = _session().get(f"{base_url}/pool/health", timeout=timeout, allow_redirects=False)
        runtime = response.json().get("runtime") if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return runtime if isinstance(runtime, str) else None


def restart(base_url: str, *, token: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Restart the agent with extra variables (the production image's POST /pool/restart {env}); it
    answers once the agent is ready again. The variables stay until the next restart or redeploy."""
    return _call("POST", f"{base_url}/pool/restart", token=token, timeout=timeout, json_body={"env": env})


def provision(base_url: str, *, token: str, body: dict, timeout: float) -> dict[str, Any]:
    return _call("POST", f"{base_url}/pool/provision", token=token, timeout=timeout, json_body=body)


def update_identity(base_url: str, *, token: str, body: dict, timeout: float) -> dict[str, Any]:
    return _call("POST", f"{base_url}/pool/update", token=token, timeout=timeout, json_body=body)


def convos_status(base_url: str, *, token: str, timeout: float) -> dict[str, Any]:
    return _call("GET", f"{base_url}/convos/status", token=token, timeout=timeout)


def agent_message(base_url: str, *, token: str, text: str, sender_name: str, timeout: float) -> list[str]:
    """A person's message to the agent (loopback channel); returns the agent's replies."""
    answer = _call("POST", f"{base_url}/agent/messages", token=token, timeout=timeout, json_body={"text": text, "senderName": sender_name})
    return [str(r) for r in answer.get("replies") or []]


def convos_reset(base_url: str, *, token: str, timeout: float) -> dict[str, Any]:
    return _call("POST", f"{base_url}/convos/reset", token=token, timeout=timeout, json_body={})


def set_credentials(base_url: str, *, token: str, values: dict[str, str] | None = None, remove: list[str] | None = None,
                    timeout: float) -> list[str]:
    """Give the running instance claim-time tool credentials (or take them back); returns the names it holds."""
    answer = _call("POST", f"{base_url}/pool/credentials", token=token, timeout=timeout,
                   json_body={"set": values or {}, "remove": remove or []})
    return list(answer.get("names") or [])
