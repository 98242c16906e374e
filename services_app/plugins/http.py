"""The one way tool plugins call a provider's JSON API: bearer auth, timeout, bounded retries, and
errors that are safe to log.

Retries follow services_app.retry (which answers and errors are worth another attempt, back-off,
Retry-After). On top of it, this module decides what may be sent twice. 429 is always retried (the
provider refused the request, so it did nothing), honouring Retry-After up to MAX_RETRY_AFTER_S; a
longer wait is handed back to the caller as a transient error carrying `retry_after` rather than
blocking a worker. Other retryable answers (5xx, 408, 425) and timeouts are retried only for
idempotent calls (GET, PUT, PATCH, DELETE, or a POST the caller marks idempotent, e.g. AgentMail's
create with `client_id`): a POST that timed out or answered 500 may well have created the resource,
and a blind retry would buy a second phone number or mint a second key. For those, only failures
where the request provably never left (connect timeout, connection refused, DNS) are retried; the
rest surface as transient errors.

Error messages name the provider, the method and the route (never the host's query string or a
body) plus, when the provider sent one, its short message field, redacted: they end up in logs,
admin pages and API answers, so no key may appear in them, not even one a provider echoes back.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from convos.redaction import redact
from services_app.providers.base import ProviderError
from services_app.retry import (
    RetriesExhausted,
    TryAgain,
    call_with_retries,
    is_permanent_status,
    is_retryable_error,
    is_retryable_status,
    never_sent,
    retry_after_s,
)

MAX_RETRY_AFTER_S = 10.0  # longer waits go back to the caller: a tick or request must not stall
MAX_MESSAGE_CHARS = 200
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Opaque tokens a provider might echo (am_…, KEY…, long random strings). UUIDs are ids, kept.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{24,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# Tests replace this (monkeypatch) or pass `sleep=`; production sleeps for real.
sleep: Callable[[float], None] = time.sleep


class ProviderHttpError(ProviderError):
    """A ProviderError from an HTTP call: `status_code` is None when no answer came back;
    `retry_after` (seconds) is set when the provider asked for a longer pause than we wait."""

    def __init__(self, message: str, *, permanent: bool, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, permanent=permanent)
        self.status_code = status_code
        self.retry_after = retry_after


def request_json(
    method: str,
    url: str,
    *,
    api_key: str,
    json: Any = None,
    params: dict[str, Any] | list[tuple[str, Any]] | None = None,
    expected: Iterable[int] = (200, 201, 204),
    retries: int = 2,
    provider: str = "provider",
    idempotent: bool | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Any:
    """Call the API and return its decoded JSON ({} for an empty body).

    Raises ProviderHttpError: permanent for 4xx other than 408/425/429 (callers turn 404 on
    destroy or 409/422 on an order into their own outcome via `status_code`), transient otherwise."""
    method = method.upper()
    expected = tuple(expected)
    idempotent = method in _IDEMPOTENT_METHODS if idempotent is None else idempotent
    do_sleep = sleep or globals()["sleep"]
    where = f"{provider}: {method} {urlsplit(url).path or '/'}"
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "convos-pool"}
    timeout = float(settings.PROVIDER_TIMEOUT_S)

    def attempt() -> Any:
        try:
            response = requests.request(method, url, headers=headers, json=json, params=params, timeout=timeout)
        except requests.RequestException as exc:
            raise _network_failure(exc, where, timeout, idempotent) from None
        if response.status_code in expected:
            return _decode(response, where)
        raise _refusal(response, where, api_key, idempotent)

    try:
        return call_with_retries(attempt, retries=retries, what=where, sleep=do_sleep, provider=provider, operation=method)
    except RetriesExhausted as gave_up:
        raise gave_up.last.error from None


def _network_failure(exc: requests.RequestException, where: str, timeout: float, idempotent: bool) -> Exception:
    """No answer came back: TryAgain when a second attempt is safe, else the transient error."""
    reason = f"timed out after {timeout:g}s" if isinstance(exc, requests.Timeout) else f"connection failed ({exc.__class__.__name__})"
    error = ProviderHttpError(f"{where} {reason}", permanent=False)
    if is_retryable_error(exc) and (idempotent or never_sent(exc)):
        return TryAgain(reason, error=error)
    return error


def _refusal(response: requests.Response, where: str, api_key: str, idempotent: bool) -> Exception:
    """An answer other than the expected ones: TryAgain when asking again may help, else the error."""
    status = response.status_code
    detail = provider_message(response, api_key)
    message = f"{where} answered HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429:
        retry_after = retry_after_s(response.headers.get("Retry-After"))
        error = ProviderHttpError(message, permanent=False, status_code=status, retry_after=retry_after)
        if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
            return error
        return TryAgain("HTTP 429", delay=retry_after, error=error)
    if is_retryable_status(status):
        error = ProviderHttpError(message, permanent=False, status_code=status)
        return TryAgain(f"HTTP {status}", error=error) if idempotent else error
    # Any other answer, 2xx we did not expect included, will not change by asking again.
    return ProviderHttpError(message, permanent=is_permanent_status(status), status_code=status)


def require(payload: Any, *path: str | int, where: str) -> Any:
    """payload[path...] or a transient ProviderError naming the missing field (never the payload)."""
    value = payload
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            value = None
        if value is None:
            break
    if value is None or value == "":
        field = ".".join(str(p) for p in path)
        raise ProviderError(f"{where}: malformed response (no {field})", permanent=False)
    return value


def scrub(text: str, *secrets: str) -> str:
    """Remove the given secrets, anything key-shaped, and cap the length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = redact(text)
    text = _TOKEN.sub(lambda m: m.group(0) if _UUID.fullmatch(m.group(0)) else "[redacted]", text)
    text = " ".join(text.split())
    return text[:MAX_MESSAGE_CHARS] + ("…" if len(text) > MAX_MESSAGE_CHARS else "")


def _decode(response: requests.Response, where: str) -> Any:
    if not response.content or response.status_code == 204:
        return {}
    try:
        return response.json()
    except ValueError:
        raise ProviderHttpError(f"{where}: malformed response (not JSON)", permanent=False, status_code=response.status_code) from None


def provider_message(response: requests.Response, api_key: str) -> str:
    """The provider's own short error text, if it sent one in a field we know; never the body."""
    try:
        body = response.json()
    except ValueError:
        return ""
    candidates: list[Any] = []
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            candidates += [error.get("message"), error.get("detail")]
        else:
            candidates.append(error)
        errors = body.get("errors")  # Telnyx: {"errors": [{"code", "title", "detail"}]}
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            candidates += [errors[0].get("detail"), errors[0].get("title")]
        candidates += [body.get("message"), body.get("detail")]
    text = next((c for c in candidates if isinstance(c, str) and c.strip()), "")
    return scrub(text, api_key) if text else ""


# --- Shared by the plugins' USER mode: checking user-supplied credentials without echoing them ---

MAX_USER_VALUE_CHARS = 1024


def user_value(user_config: Any, field: str, *, tool: str, required: bool = True,
               pattern: re.Pattern[str] | None = None, hint: str = "is malformed") -> str:
    """The stripped string at userConfig[field], or a permanent ProviderError that names the field
    (never its value: it is usually a secret)."""
    if not isinstance(user_config, dict):
        raise ProviderError(f"{tool}: userConfig must be an object", permanent=True)
    value = user_config.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ProviderError(f"{tool}: userConfig.{field} is required", permanent=True)
        return ""
    if not isinstance(value, str):
        raise ProviderError(f"{tool}: userConfig.{field} must be a string", permanent=True)
    value = value.strip()
    # Whitespace or control characters inside a credential would corrupt the env file it lands in.
    if len(value) > MAX_USER_VALUE_CHARS or any(c.isspace() or ord(c) < 32 for c in value):
        raise ProviderError(f"{tool}: userConfig.{field} is malformed", permanent=True)
    if pattern is not None and not pattern.fullmatch(value):
        raise ProviderError(f"{tool}: userConfig.{field} {hint}", permanent=True)
    return value
