"""The one way tool plugins call a provider's JSON API: bearer auth, timeout, bounded retries, and
errors that are safe to log.

Retries. 429 is always retried (the provider refused the request, so it did nothing), honouring
Retry-After up to MAX_RETRY_AFTER_S; a longer wait is handed back to the caller as a transient
error carrying `retry_after` rather than blocking a worker. 5xx answers and timeouts are retried
with jittered exponential back-off only for idempotent calls (GET, PUT, PATCH, DELETE, or a POST
the caller marks idempotent, e.g. AgentMail's create with `client_id`): a POST that timed out or
answered 500 may well have created the resource, and a blind retry would buy a second phone number
or mint a second key. For those, only failures where the request provably never left (connect
timeout, connection refused, DNS) are retried; the rest surface as transient errors.

Error messages name the provider, the method and the route (never the host's query string or a
body) plus, when the provider sent one, its short message field, redacted: they end up in logs,
admin pages and API answers, so no key may appear in them, not even one a provider echoes back.
"""
from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from urllib3.exceptions import MaxRetryError, NewConnectionError

from convos.redaction import redact
from services_app.providers.base import ProviderError

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 10.0  # longer waits go back to the caller: a tick or request must not stall
BACKOFF_BASE_S = 0.5
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

    Raises ProviderHttpError: permanent for 4xx other than 408/429 (callers turn 404 on destroy
    or 409/422 on an order into their own outcome via `status_code`), transient otherwise."""
    method = method.upper()
    expected = tuple(expected)
    idempotent = method in _IDEMPOTENT_METHODS if idempotent is None else idempotent
    do_sleep = sleep or globals()["sleep"]
    where = f"{provider}: {method} {urlsplit(url).path or '/'}"
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "convos-pool"}
    timeout = float(settings.PROVIDER_TIMEOUT_S)

    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            response = requests.request(method, url, headers=headers, json=json, params=params, timeout=timeout)
        except requests.RequestException as exc:
            retryable = idempotent or _never_sent(exc)
            reason = f"timed out after {timeout:g}s" if isinstance(exc, requests.Timeout) else f"connection failed ({exc.__class__.__name__})"
            if retryable and not last:
                _wait(do_sleep, _backoff(attempt), where, reason)
                continue
            raise ProviderHttpError(f"{where} {reason}", permanent=False) from None

        status = response.status_code
        if status in expected:
            return _decode(response, where)

        detail = _provider_message(response, api_key)
        message = f"{where} answered HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            retry_after = _retry_after(response)
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                raise ProviderHttpError(message, permanent=False, status_code=status, retry_after=retry_after)
            if not last:
                _wait(do_sleep, retry_after if retry_after is not None else _backoff(attempt), where, "HTTP 429")
                continue
            raise ProviderHttpError(message, permanent=False, status_code=status, retry_after=retry_after)
        if status >= 500 or status == 408:
            if idempotent and not last:
                _wait(do_sleep, _backoff(attempt), where, f"HTTP {status}")
                continue
            raise ProviderHttpError(message, permanent=False, status_code=status)
        # Any other answer, 2xx we did not expect included, will not change by asking again.
        raise ProviderHttpError(message, permanent=400 <= status < 500, status_code=status)
    raise AssertionError("unreachable")  # the loop always returns or raises


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


def _provider_message(response: requests.Response, api_key: str) -> str:
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


def _retry_after(response: requests.Response) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _backoff(attempt: int) -> float:
    # Jitter spreads out the fleet: many instances hitting the same provider at once must not
    # come back in lockstep.
    return BACKOFF_BASE_S * (2 ** attempt) * random.uniform(0.5, 1.0)


def _wait(do_sleep: Callable[[float], None], seconds: float, where: str, reason: str) -> None:
    logger.info("%s: %s, retrying in %.2fs", where, reason, seconds)
    do_sleep(seconds)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the provider, so even a create may be retried."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        return isinstance(cause, NewConnectionError)  # refused, unreachable, DNS failure
    return False


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
