"""Client-side limits for Railway's API: a request-rate token bucket and a projectCreate spacer.

Railway allows about 50 requests per second per account and one `projectCreate` per 30 s per
token, and answers HTTP 429 past that. Staying under the limits here is cheaper than being told.

Both limiters are PER PROCESS: every gunicorn worker and celery process keeps its own budget, so N
processes can together send N times the configured rate. That is acceptable at the pool's scale
(few processes, RAILWAY_RATE_LIMIT_RPS set below Railway's limit, 429s honoured by the client);
a limit shared across processes would need Redis (e.g. a Lua-scripted bucket keyed per token).

Both are thread-safe and never sleep while holding their lock: a caller reserves its slot under
the lock (the bucket may go negative, i.e. into debt) and then sleeps until the slot comes, so
concurrent callers queue up in order instead of stampeding. Clock and sleep are injectable.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from convos.metrics import RAILWAY_RATE_LIMIT_WAIT_SECONDS

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """At most `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    def reserve(self) -> float:
        """Take one token; returns how many seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Wait until a request may be sent; returns the time waited."""
        wait = self.reserve()
        if wait > 0:
            RAILWAY_RATE_LIMIT_WAIT_SECONDS.labels("requests").observe(wait)
            self._sleep(wait)
        return wait


class CreateSpacer:
    """Spaces `projectCreate` calls at least `interval_s` apart per token, rotating among tokens.

    `acquire_create_token()` picks the token whose next allowed create comes first (ties go to the
    least recently used one), books its next slot and waits until that slot. With K tokens the
    pool therefore creates up to K projects per interval.
    """

    def __init__(self, tokens: Sequence[str], interval_s: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        self.interval_s = float(interval_s)
        self._tokens = list(dict.fromkeys(tokens))  # keep order, drop duplicates
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_allowed: dict[str, float] = {t: -math.inf for t in self._tokens}
        self._last_used: dict[str, int] = {t: i - len(self._tokens) for i, t in enumerate(self._tokens)}
        self._uses = 0

    def reserve(self, token: str | None = None) -> tuple[str, float]:
        """Book the next create slot (of `token`, or of the best token); returns (token, wait)."""
        with self._lock:
            now = self._clock()
            if token is None:
                token = min(self._tokens, key=lambda t: (max(now, self._next_allowed[t]), self._last_used[t]))
            elif token not in self._next_allowed:
                self._next_allowed[token] = -math.inf
                self._last_used[token] = -1
            at = max(now, self._next_allowed[token])
            self._next_allowed[token] = at + self.interval_s
            self._last_used[token] = self._uses
            self._uses += 1
            return token, at - now

    def acquire_create_token(self, token: str | None = None) -> str:
        """The token to send the next projectCreate with, once that token may create again."""
        token, wait = self.reserve(token)
        if wait > 0:
            RAILWAY_RATE_LIMIT_WAIT_SECONDS.labels("project_create").observe(wait)
            self._sleep(wait)
        return token
