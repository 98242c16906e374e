"""A small GraphQL client for Railway's public API: rate limits, retries, errors without secrets.

`execute()` returns the response's `data` or raises `RailwayError` (a `ProviderError`):
- every request first passes the token bucket; `projectCreate` also waits for a token that may
  create a project again (one per RAILWAY_PROJECT_CREATE_INTERVAL_S per token). Both limits are
  per process, or shared by every process through Redis when REDIS_URL is set (rate_limit.py);
- HTTP 429 and GraphQL "rate limit" errors wait (Retry-After when given) and retry;
- the other failures services_app.retry deems retryable (5xx, 408, 425, connection errors,
  timeouts) and GraphQL "internal" errors retry with jittered exponential back-off, except where
  the first attempt may have been applied by Railway and a second one would not be idempotent
  (`projectCreate`: a retried create could leave a second, unknown project); those raise at once
  with `maybe_applied=True` and the caller cleans up. A request that never left is always retried;
- other 4xx and other GraphQL errors are permanent; a body that is not a GraphQL response is
  transient (permanent=False) but not retried, since the request may have been applied.

Back-off, Retry-After parsing and the retry loop are services_app.retry's; what is local here is
what only Railway does: rate limits and internal errors reported as GraphQL errors (HTTP 200).

Error messages name the operation and never contain a token.
"""
from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import requests

from services_app.providers.base import ProviderError
from services_app.providers.rate_limit import (
    KEY_PREFIX,
    Clock,
    CreateSpacer,
    RedisCreateSpacer,
    RedisTokenBucket,
    Sleep,
    TokenBucket,
    redis_connection,
    token_id,
)
from services_app.retry import (
    RETRYABLE_ERRORS,
    Jitter,
    RetriesExhausted,
    TryAgain,
    call_with_retries,
    is_permanent_status,
    is_retryable_status,
    never_sent,
    retry_after_s,
)

_OPERATION = re.compile(r"\b(query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")
_PROJECT_CREATE = re.compile(r"\bprojectCreate\s*\(")
# Root fields whose retry after an ambiguous failure could apply them twice.
_NON_IDEMPOTENT = (_PROJECT_CREATE,)
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests", re.I)
_INTERNAL = re.compile(r"internal|problem processing request|try again", re.I)
_NOT_FOUND = re.compile(r"not found|does not exist", re.I)

MAX_RETRY_AFTER_S = 300.0  # Railway's waits are honoured up to this; the caller runs in the background


class RailwayError(ProviderError):
    """A Railway call failed. `maybe_applied`: Railway may have carried the mutation out anyway."""

    def __init__(self, message: str, *, permanent: bool = False, status_code: int | None = None, maybe_applied: bool = False) -> None:
        super().__init__(message, permanent=permanent)
        self.status_code = status_code
        self.maybe_applied = maybe_applied

    @property
    def not_found(self) -> bool:
        return bool(_NOT_FOUND.search(self.message)) or self.status_code == 404


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
        jitter: Jitter = random.random,
        bucket: TokenBucket | RedisTokenBucket | None = None,
        spacer: CreateSpacer | RedisCreateSpacer | None = None,
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
        self._bucket = bucket or TokenBucket(rps, burst_for(rps), clock=clock, sleep=sleep)
        self._spacer = spacer or CreateSpacer(tokens, create_interval_s, clock=clock, sleep=sleep)
        self._round_robin = itertools.cycle(self._tokens)
        self._rr_lock = threading.Lock()
        self._local = threading.local()  # requests.Session is not thread-safe: one per thread

    # --- public -----------------------------------------------------------------------------------
    def execute(self, document: str, variables: dict[str, Any] | None = None, *, token: str | None = None,
                field_errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The answer's `data`. With a `field_errors` list, GraphQL errors that each name a `path`
        (one aliased field failed, e.g. a project not found) are appended to it instead of raised,
        and the partial `data` is returned ({} when null); rate-limit and internal errors still
        wait and retry, and errors without a path still raise."""
        match = _OPERATION.search(document)
        operation = match.group(2) if match else "anonymous"
        creates_project = bool(_PROJECT_CREATE.search(document))
        idempotent = not any(p.search(document) for p in _NON_IDEMPOTENT)
        if token:
            self._secrets.add(token)
        body: dict[str, Any] = {"query": document, "variables": variables or {}}
        if match:
            body["operationName"] = operation

        def attempt() -> dict[str, Any]:
            # Every attempt, retries included, waits its turn in the rate limits.
            use_token = self._spacer.acquire_create_token(token) if creates_project else (token or self._next_token())
            self._bucket.acquire()
            return self._send(operation, body, use_token, idempotent, field_errors)

        try:
            return call_with_retries(attempt, retries=self.max_retries, what=f"Railway {operation}", sleep=self._sleep, jitter=self._jitter,
                                     provider="railway", operation=operation)
        except RetriesExhausted as gave_up:
            tries = f"{gave_up.attempts} attempt{'s' if gave_up.attempts > 1 else ''}"
            raise self._fail(operation, f"failed after {tries}: {gave_up.last.reason}") from None

    # --- internals --------------------------------------------------------------------------------
    def _next_token(self) -> str:
        with self._rr_lock:
            return next(self._round_robin)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _scrub(self, text: str) -> str:
        for secret in list(self._secrets):
            text = text.replace(secret, "***")
        return text

    def _fail(self, operation: str, reason: str, **kwargs: Any) -> RailwayError:
        return RailwayError(self._scrub(f"Railway {operation}: {reason}"), **kwargs)

    def _try_again(self, reason: str, delay: float | None = None) -> TryAgain:
        return TryAgain(self._scrub(reason), delay=delay)  # the reason is logged: no token in it

    def _ambiguous(self, operation: str, reason: str, idempotent: bool, status_code: int | None = None) -> Exception:
        """A failure after which Railway may or may not have applied the request."""
        if idempotent:
            return self._try_again(reason)
        return self._fail(operation, f"{reason} (not retried: the request may have been applied)", status_code=status_code, maybe_applied=True)

    def _send(self, operation: str, body: dict[str, Any], token: str, idempotent: bool,
              field_errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            response = self._session().post(self.api_url, data=json.dumps(body), headers=headers, timeout=self.timeout_s)
        except RETRYABLE_ERRORS as exc:
            raise self._network_failure(operation, exc, idempotent) from None

        status = response.status_code
        if status == 429:
            raise self._try_again("rate limited (HTTP 429)", retry_after_s(response.headers.get("Retry-After"), max_s=MAX_RETRY_AFTER_S))
        if is_retryable_status(status):
            raise self._ambiguous(operation, f"HTTP {status}", idempotent, status)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            message = _first_message(errors)
            if _RATE_LIMITED.search(message):
                raise self._try_again(f"rate limited ({message})")
            if _INTERNAL.search(message):
                raise self._ambiguous(operation, message, idempotent, status)
            if field_errors is not None and _all_field_errors(errors) and status == 200:
                field_errors.extend(errors)
                data = payload.get("data")
                return data if isinstance(data, dict) else {}
            raise self._fail(operation, message, permanent=True, status_code=status)
        if is_permanent_status(status):
            raise self._fail(operation, f"HTTP {status}", permanent=True, status_code=status)
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise self._fail(operation, f"malformed response (HTTP {status}, not a GraphQL result)", status_code=status, maybe_applied=True)
        return payload["data"]

    def _network_failure(self, operation: str, exc: Exception, idempotent: bool) -> Exception:
        if isinstance(exc, requests.Timeout):
            reason = "timed out connecting" if isinstance(exc, requests.ConnectTimeout) else "timed out"
        else:
            reason = f"connection error ({exc.__class__.__name__})"
        if never_sent(exc):
            return self._try_again(reason)  # never reached Railway: safe even for a create
        return self._ambiguous(operation, reason, idempotent)


def _all_field_errors(errors: Any) -> bool:
    """Every error names the field it belongs to, and none is a rate limit or internal error."""
    return isinstance(errors, list) and all(
        isinstance(e, dict) and isinstance(e.get("path"), list) and e["path"]
        and not _RATE_LIMITED.search(str(e.get("message") or "")) and not _INTERNAL.search(str(e.get("message") or ""))
        for e in errors
    )


def burst_for(rps: float) -> float:
    # Burst of a quarter second's worth: any one-second window then sees at most 1.25 x rps
    # requests (50 at the default 40 rps, Railway's documented ceiling).
    return max(1.0, rps / 4)


def _first_message(errors: Any) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or "unknown GraphQL error")
    return "unknown GraphQL error"


# --- one client per process and configuration ---------------------------------------------------------
_shared: dict[tuple, RailwayClient] = {}
_shared_lock = threading.Lock()


def shared_client(
    api_url: str, tokens: Sequence[str], *, rps: float, create_interval_s: float, timeout_s: float, max_retries: int,
    redis_url: str = "", key_prefix: str = KEY_PREFIX,
) -> RailwayClient:
    """The process-wide client for this configuration.

    The services layer builds a provider per operation; the limits only hold if every provider of
    the process shares one client (one bucket, one projectCreate spacer, one round-robin). With
    `redis_url`, the bucket and the spacer live in Redis and hold across processes too (the keys
    are per account, i.e. per API URL and set of tokens, never naming a token).
    """
    key = (api_url, tuple(tokens), float(rps), float(create_interval_s), float(timeout_s), int(max_retries), redis_url, key_prefix)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            bucket = spacer = None
            if redis_url and [t for t in tokens if t]:
                account = token_id("|".join([api_url, *sorted(t for t in tokens if t)]))
                connection = redis_connection(redis_url)
                bucket = RedisTokenBucket(connection, rps, burst_for(rps), key=f"{key_prefix}bucket:{account}")
                spacer = RedisCreateSpacer(connection, [t for t in tokens if t], create_interval_s,
                                           key=f"{key_prefix}create_spacer:{account}")
            client = _shared[key] = RailwayClient(
                api_url, tokens, rps=rps, create_interval_s=create_interval_s, timeout_s=timeout_s, max_retries=max_retries,
                bucket=bucket, spacer=spacer,
            )
        return client
