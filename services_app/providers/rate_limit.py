"""Client-side limits for Railway's API: a request-rate token bucket and a projectCreate spacer.

Railway allows about 50 requests per second per account and one `projectCreate` per 30 s per
token, and answers HTTP 429 past that. Staying under the limits here is cheaper than being told.

TokenBucket and CreateSpacer are PER PROCESS: every gunicorn worker and celery process keeps its
own budget, so N processes could together send N times the configured rate. With REDIS_URL set,
RedisTokenBucket and RedisCreateSpacer hold the same state in Redis instead (one budget and one
projectCreate schedule per token for every process; `shared_client` in railway_client.py picks
them). Each reservation is one Lua script, so it is atomic across processes, and it reads Redis's
own clock (TIME), so hosts with skewed clocks still agree. When Redis cannot be reached, a call
falls back to an in-process limiter (a warning is logged once): a Railway call never fails because
Redis is down, it is only limited per process again meanwhile.

Both are thread-safe and never sleep while holding their lock: a caller reserves its slot under
the lock (the bucket may go negative, i.e. into debt) and then sleeps until the slot comes, so
concurrent callers queue up in order instead of stampeding. Clock and sleep are injectable.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from convos.metrics import RAILWAY_RATE_LIMIT_WAIT_SECONDS

logger = logging.getLogger(__name__)

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


# --- shared across processes (Redis) -------------------------------------------------------------------
KEY_PREFIX = "convos:railway:"
# After Redis failed, calls use the in-process limiter for this long before trying Redis again, so
# an unreachable Redis costs one connect timeout per interval, not one per Railway call.
REDIS_RETRY_AFTER_S = 30.0


def _now_lua(argument: int) -> str:
    """Lua setting `now` (seconds) from ARGV[argument], or from Redis's own clock when it is empty."""
    return f"""
local now = tonumber(ARGV[{argument}])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end"""


# KEYS[1]: the bucket (a hash: tokens, ts). ARGV: rate, burst, now (seconds; empty: Redis TIME).
# Returns the wait as a string (a Lua number would be truncated to an integer reply).
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])""" + _now_lua(3) + """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
-- Forget an idle bucket once it would be full again anyway (plus any debt's repayment).
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 60000)
if tokens >= 0 then return '0' end
return string.format('%.17g', -tokens / rate)
"""

# KEYS[1]: the spacer (a hash: next:<id>, used:<id>, uses). ARGV: interval, now (empty: Redis
# TIME), forced index (0: choose), then one id per token in order. Returns {index, wait}.
_SPACER_LUA = """
local interval = tonumber(ARGV[1])""" + _now_lua(2) + """
local forced = tonumber(ARGV[3])
local n = #ARGV - 3
local best, best_at, best_used = nil, nil, nil
for i = 1, n do
  local id = ARGV[3 + i]
  local nxt = tonumber(redis.call('HGET', KEYS[1], 'next:' .. id)) or now
  local used = tonumber(redis.call('HGET', KEYS[1], 'used:' .. id)) or (i - n - 1)
  local at = math.max(now, nxt)
  if forced == i or (forced == 0 and (best == nil or at < best_at or (at == best_at and used < best_used))) then
    best, best_at, best_used = i, at, used
  end
end
local uses = redis.call('HINCRBY', KEYS[1], 'uses', 1)
local id = ARGV[3 + best]
redis.call('HSET', KEYS[1], 'next:' .. id, string.format('%.17g', best_at + interval), 'used:' .. id, uses)
redis.call('PEXPIRE', KEYS[1], math.ceil((best_at - now + interval) * 1000) + 3600000)
return {best, string.format('%.17g', best_at - now)}
"""


def token_id(token: str) -> str:
    """What names a token in Redis: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def redis_connection(url: str) -> Any:
    import redis

    # Short timeouts: a Redis that does not answer must not hold a Railway call for long.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


class _RedisBacked:
    """Runs a reservation in Redis, or in the in-process `fallback` while Redis is unreachable."""

    def __init__(self, redis_client: Any, script: str, *, what: str, clock: Clock | None) -> None:
        self._redis = redis_client
        self._script = redis_client.register_script(script)
        self._what = what
        self._clock = clock  # None: Redis's own clock (TIME); tests may pin one
        self._down_until = -math.inf
        self._warned = False
        self._state_lock = threading.Lock()

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def _run(self, keys: list[str], args: list[Any]) -> Any | None:
        """The script's reply, or None when Redis cannot be used for this call."""
        import redis

        if time.monotonic() < self._down_until:
            return None
        try:
            return self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            with self._state_lock:
                self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S
                warn, self._warned = not self._warned, True
            if warn:  # once: a down Redis would otherwise log on every Railway call
                logger.warning("Redis unreachable for the shared Railway %s (%s): limiting per process meanwhile",
                               self._what, exc.__class__.__name__)
            return None


class RedisTokenBucket(_RedisBacked):
    """TokenBucket with its state in Redis: one budget for every process using the same key."""

    def __init__(self, redis_client: Any, rate: float, burst: float, *, key: str = f"{KEY_PREFIX}bucket",
                 clock: Clock | None = None, sleep: Sleep = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        super().__init__(redis_client, _BUCKET_LUA, what="rate limit", clock=clock)
        self.rate = float(rate)
        self.burst = float(burst)
        self.key = key
        self._sleep = sleep
        self.fallback = TokenBucket(rate, burst, clock=clock or time.monotonic, sleep=sleep)

    def reserve(self) -> float:
        reply = self._run([self.key], [repr(self.rate), repr(self.burst), self._now_arg()])
        if reply is None:
            return self.fallback.reserve()
        return max(0.0, float(reply))

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            RAILWAY_RATE_LIMIT_WAIT_SECONDS.labels("requests").observe(wait)
            self._sleep(wait)
        return wait


class RedisCreateSpacer(_RedisBacked):
    """CreateSpacer with each token's next allowed projectCreate time in Redis, for every process."""

    def __init__(self, redis_client: Any, tokens: Sequence[str], interval_s: float, *, key: str = f"{KEY_PREFIX}create_spacer",
                 clock: Clock | None = None, sleep: Sleep = time.sleep) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        super().__init__(redis_client, _SPACER_LUA, what="projectCreate spacing", clock=clock)
        self.interval_s = float(interval_s)
        self._tokens = list(dict.fromkeys(tokens))
        self.key = key
        self._sleep = sleep
        self.fallback = CreateSpacer(self._tokens, interval_s, clock=clock or time.monotonic, sleep=sleep)

    def reserve(self, token: str | None = None) -> tuple[str, float]:
        tokens = self._tokens if token is None or token in self._tokens else [*self._tokens, token]
        forced = 0 if token is None else tokens.index(token) + 1
        reply = self._run([self.key], [repr(self.interval_s), self._now_arg(), forced, *(token_id(t) for t in tokens)])
        if reply is None:
            return self.fallback.reserve(token)
        index, wait = reply
        return tokens[int(index) - 1], max(0.0, float(wait))

    def acquire_create_token(self, token: str | None = None) -> str:
        token, wait = self.reserve(token)
        if wait > 0:
            RAILWAY_RATE_LIMIT_WAIT_SECONDS.labels("project_create").observe(wait)
            self._sleep(wait)
        return token
