"""A small GraphQL client for Railway's public API: rate limits, retries, errors without secrets.

`execute()` returns the response's `data` or raises `RailwayError` (a `ProviderError`):
- every request first passes the process-wide token bucket; `projectCreate` also waits for a
  token that may create a project again (one per RAILWAY_PROJECT_CREATE_INTERVAL_S per token);
- HTTP 429 and GraphQL "rate limit" errors wait (Retry-After when given) and retry;
- 5xx, connection errors, timeouts and GraphQL "internal" errors retry with jittered exponential
  back-off, except where the first attempt may have been applied by Railway and a second one would
  not be idempotent (`projectCreate`: a retried create could leave a second, unknown project);
  those raise at once with `maybe_applied=True` and the caller cleans up;
- other 4xx and other GraphQL errors are permanent; a body that is not a GraphQL response is
  transient (permanent=False) but not retried, since the request may have been applied.

Error messages name the operation and never contain a token.
"""
from __future__ import annotations

import email.utils
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from services_app.providers.base import ProviderError
from services_app.providers.rate_limit import Clock, CreateSpacer, Sleep, TokenBucket

logger = logging.getLogger(__name__)

_OPERATION = re.compile(r"\b(query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")
_PROJECT_CREATE = re.compile(r"\bprojectCreate\s*\(")
# Root fields whose retry after an ambiguous failure could apply them twice.
_NON_IDEMPOTENT = (_PROJECT_CREATE,)
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests", re.I)
_INTERNAL = re.compile(r"internal|problem processing request|try again", re.I)
_NOT_FOUND = re.compile(r"not found|does not exist", re.I)

MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0


class RailwayError(ProviderError):
    """A Railway call failed. `maybe_applied`: Railway may have carried the mutation out anyway."""

    def __init__(self, message: str, *, permanent: bool = False, status_code: int | None = None, maybe_applied: bool = False) -> None:
        super().__init__(message, permanent=permanent)
        self.status_code = status_code
        self.maybe_applied = maybe_applied

    @property
    def not_found(self) -> bool:
        return bool(_NOT_FOUND.search(self.message)) or self.status_code == 404


class _Retry(Exception):
    """Internal: the attempt failed in a way a later attempt can fix (after `delay`, if given)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        self.reason, self.delay = reason, delay


class RailwayClient:
    def __init__(
        self,
        api_url: str,
        tokens: Sequence[str],
        *,
        rps: float,
        create_interval_s: float,
        timeout_s: float,
        max_retries: int,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        tokens = [t for t in tokens if t]
        if not tokens:
            raise ProviderError("Railway needs at least one API token (RAILWAY_API_TOKENS)", permanent=True)
        self.api_url = api_url
        self.timeout_s = timeout_s
        self.max_retries = max(0, int(max_retries))
        self._tokens = tuple(tokens)
        self._secrets = set(tokens)  # scrubbed from every error message, with any explicit token
        self._sleep = sleep
        self._jitter = jitter
        # Burst of a quarter second's worth: any one-second window then sees at most 1.25 x rps
        # requests (50 at the default 40 rps, Railway's documented ceiling).
        self._bucket = TokenBucket(rps, max(1.0, rps / 4), clock=clock, sleep=sleep)
        self._spacer = CreateSpacer(tokens, create_interval_s, clock=clock, sleep=sleep)
        self._round_robin = itertools.cycle(self._tokens)
        self._rr_lock = threading.Lock()
        self._local = threading.local()  # requests.Session is not thread-safe: one per thread

    # --- public -----------------------------------------------------------------------------------
    def execute(self, document: str, variables: dict[str, Any] | None = None, *, token: str | None = None) -> dict[str, Any]:
        match = _OPERATION.search(document)
        operation = match.group(2) if match else "anonymous"
        creates_project = bool(_PROJECT_CREATE.search(document))
        idempotent = not any(p.search(document) for p in _NON_IDEMPOTENT)
        if token:
            self._secrets.add(token)
        body: dict[str, Any] = {"query": document, "variables": variables or {}}
        if match:
            body["operationName"] = operation

        attempt = 0
        while True:
            use_token = self._spacer.acquire_create_token(token) if creates_project else (token or self._next_token())
            self._bucket.acquire()
            try:
                return self._send(operation, body, use_token, idempotent)
            except _Retry as retry:
                if attempt >= self.max_retries:
                    tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                    raise self._fail(operation, f"failed after {tries}: {retry.reason}") from None
                delay = retry.delay if retry.delay is not None else self._backoff(attempt)
                logger.warning("Railway %s: %s; retry %d/%d in %.1fs", operation, self._scrub(retry.reason), attempt + 1, self.max_retries, delay)
                self._sleep(delay)
                attempt += 1

    # --- internals --------------------------------------------------------------------------------
    def _next_token(self) -> str:
        with self._rr_lock:
            return next(self._round_robin)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _backoff(self, attempt: int) -> float:
        ceiling = min(MAX_BACKOFF_S, 0.5 * 2**attempt)
        return ceiling / 2 + self._jitter() * ceiling / 2

    def _scrub(self, text: str) -> str:
        for secret in list(self._secrets):
            text = text.replace(secret, "***")
        return text

    def _fail(self, operation: str, reason: str, **kwargs: Any) -> RailwayError:
        return RailwayError(self._scrub(f"Railway {operation}: {reason}"), **kwargs)

    def _ambiguous(self, operation: str, reason: str, idempotent: bool, status_code: int | None = None) -> Exception:
        """A failure after which Railway may or may not have applied the request."""
        if idempotent:
            return _Retry(reason)
        return self._fail(operation, f"{reason} (not retried: the request may have been applied)", status_code=status_code, maybe_applied=True)

    def _send(self, operation: str, body: dict[str, Any], token: str, idempotent: bool) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            response = self._session().post(self.api_url, data=json.dumps(body), headers=headers, timeout=self.timeout_s)
        except requests.ConnectTimeout:
            raise _Retry("timed out connecting") from None  # never reached Railway: always safe
        except requests.Timeout:
            raise self._ambiguous(operation, "timed out", idempotent) from None
        except requests.ConnectionError as exc:
            raise self._ambiguous(operation, f"connection error ({exc.__class__.__name__})", idempotent) from None

        status = response.status_code
        if status == 429:
            raise _Retry("rate limited (HTTP 429)", _retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            raise self._ambiguous(operation, f"HTTP {status}", idempotent, status)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            message = _first_message(errors)
            if _RATE_LIMITED.search(message):
                raise _Retry(f"rate limited ({message})")
            if _INTERNAL.search(message):
                raise self._ambiguous(operation, message, idempotent, status)
            raise self._fail(operation, message, permanent=True, status_code=status)
        if status >= 400:
            raise self._fail(operation, f"HTTP {status}", permanent=True, status_code=status)
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise self._fail(operation, f"malformed response (HTTP {status}, not a GraphQL result)", status_code=status, maybe_applied=True)
        return payload["data"]


def _first_message(errors: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or "unknown GraphQL error")
    return "unknown GraphQL error"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


# --- one client per process and configuration ---------------------------------------------------------
_shared: dict[tuple, RailwayClient] = {}
_shared_lock = threading.Lock()


def shared_client(
    api_url: str, tokens: Sequence[str], *, rps: float, create_interval_s: float, timeout_s: float, max_retries: int
) -> RailwayClient:
    """The process-wide client for this configuration.

    The services layer builds a provider per operation; the limits only hold if every provider of
    the process shares one client (one bucket, one projectCreate spacer, one round-robin).
    """
    key = (api_url, tuple(tokens), float(rps), float(create_interval_s), float(timeout_s), int(max_retries))
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = RailwayClient(
                api_url, tokens, rps=rps, create_interval_s=create_interval_s, timeout_s=timeout_s, max_retries=max_retries
            )
        return client
