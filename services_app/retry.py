"""Retrying outgoing HTTP calls: one policy for the tool plugins' HTTP helper and the Railway client.

- Which failures a later attempt may fix: 5xx, 408, 425 and 429 answers, connection errors and
  timeouts. Every other 4xx is permanent: asking again gets the same answer.
- How long to wait: the server's Retry-After (delta-seconds or an HTTP date, parsed by urllib3),
  else exponential back-off with jitter.
- `call_with_retries` runs an attempt until it succeeds, fails for good or runs out of retries.

Whether a retryable failure may really be sent again stays with the caller: a create that timed
out may have been applied, and only `never_sent` failures are safe to repeat regardless. What to
wait at most for a Retry-After is the caller's policy too (a worker may not stall for minutes).
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TypeVar

import requests
from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from convos.metrics import PROVIDER_CALLS, PROVIDER_ERRORS

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], None]
Jitter = Callable[[], float]  # uniform in [0, 1), like random.random

BACKOFF_BASE_S = 0.5
MAX_BACKOFF_S = 30.0
# The 4xx that mean "not now" rather than "no": request timeout, too early, too many requests.
_RETRYABLE_4XX = frozenset({408, 425, 429})
# The network failed, not the request. ChunkedEncodingError: the connection broke mid-answer.
RETRYABLE_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Only its Retry-After parser is used; the instance holds no state that parsing changes.
_RETRY_AFTER_PARSER = Retry()


def is_retryable_status(status: int) -> bool:
    """5xx, 408, 425 and 429: the server may well answer otherwise a little later."""
    return status >= 500 or status in _RETRYABLE_4XX


def is_permanent_status(status: int) -> bool:
    """Any other 4xx: the request itself is wrong (auth, missing, invalid), retrying cannot help."""
    return 400 <= status < 500 and not is_retryable_status(status)


def is_retryable_error(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE_ERRORS)


def never_sent(exc: BaseException) -> bool:
    """True when the request cannot have reached the server, so even a create may be retried."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        return isinstance(cause, NewConnectionError)  # refused, unreachable, DNS failure
    return False


def retry_after_s(value: str | None, *, max_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value, at most `max_s`; None when absent or
    unreadable (the caller then backs off on its own)."""
    if not value:
        return None
    try:
        # RFC 9110 allows whole seconds only, but providers send fractions ("1.5") too, and mean
        # them; urllib3 refuses those, so plain numbers are read here and dates left to urllib3.
        seconds = float(value)
    except ValueError:
        try:
            seconds = float(_RETRY_AFTER_PARSER.parse_retry_after(value))
        except InvalidHeader:
            return None
    if not math.isfinite(seconds):
        return None
    seconds = max(0.0, seconds)  # a negative number or a date already past: no wait
    return seconds if max_s is None else min(max_s, seconds)


def backoff_s(attempt: int, *, jitter: Jitter = random.random) -> float:
    """The wait before retry number `attempt + 1`: between half and all of
    min(MAX_BACKOFF_S, BACKOFF_BASE_S * 2**attempt). The jitter spreads out the fleet (many
    instances failing on one provider at once must not come back in lockstep); the fixed half
    keeps the wait growing from one attempt to the next."""
    ceiling = min(MAX_BACKOFF_S, BACKOFF_BASE_S * 2**attempt)
    return ceiling / 2 + jitter() * ceiling / 2


class TryAgain(Exception):
    """Raised by an attempt whose failure a later attempt may fix.

    `delay`: how long to wait first (the server's Retry-After) instead of the back-off.
    `error`: the caller's own error for this failure, for it to raise when no attempt is left.
    `reason` is logged: it must hold no secret."""

    def __init__(self, reason: str, *, delay: float | None = None, error: Exception | None = None) -> None:
        super().__init__(reason)
        self.reason, self.delay, self.error = reason, delay, error


class RetriesExhausted(Exception):
    """Every attempt raised TryAgain; `last` is the final one, after `attempts` attempts."""

    def __init__(self, last: TryAgain, attempts: int) -> None:
        super().__init__(f"{last.reason} (after {attempts} attempts)")
        self.last, self.attempts = last, attempts


def call_with_retries(attempt: Callable[[], T], *, retries: int, what: str, sleep: Sleep,
                      jitter: Jitter = random.random, provider: str = "", operation: str = "") -> T:
    """`attempt()`'s result, calling it up to 1 + `retries` times while it raises TryAgain.

    Any other exception is final and passes straight through. When the retries run out this
    raises RetriesExhausted. `what` names the call in the log (no secrets: no query string).
    With a `provider`, every attempt is counted in convos_pool_provider_calls_total and every
    failed one in convos_pool_provider_errors_total (labels: provider, `operation`)."""
    retried = 0
    while True:
        if provider:
            PROVIDER_CALLS.labels(provider, operation).inc()
        try:
            return attempt()
        except Exception as exc:
            if provider:
                PROVIDER_ERRORS.labels(provider, operation).inc()
            if not isinstance(exc, TryAgain):
                raise
            failure = exc
            if retried >= retries:
                raise RetriesExhausted(failure, retried + 1) from None
            delay = failure.delay if failure.delay is not None else backoff_s(retried, jitter=jitter)
            logger.warning("%s: %s; retry %d/%d in %.2fs", what, failure.reason, retried + 1, retries, delay)
            sleep(delay)
            retried += 1
