"""The cache backend used when REDIS_URL is set: Django's RedisCache, made to fail soft.

Nothing the cache holds is needed to answer a request (API clients' rate-limit windows, the
self-provisioning counter), so Redis being down must never cost a 500: a read that fails is a
miss, a write that fails is dropped, and a warning is logged (at most once per `_WARN_EVERY_S` per
process, or an outage would log on every request). `incr`/`decr` still raise: their callers
count, and a missing count is not a zero; they already catch and log. redis-py reconnects by
itself on the next call once Redis answers again, so nothing needs restarting. The socket
timeouts (settings: REDIS_TIMEOUT_S) bound how long a call can wait on a Redis that accepts
connections but does not answer.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)
_WARN_EVERY_S = 30.0
_warned_at = 0.0
_warn_lock = threading.Lock()


def _warn(operation: str, exc: Exception) -> None:
    global _warned_at
    with _warn_lock:
        now = time.monotonic()
        quiet = _warned_at and now - _warned_at < _WARN_EVERY_S
        if not quiet:
            _warned_at = now
    (logger.debug if quiet else logger.warning)(
        "cache unavailable (%s treated as a miss): %s: %s", operation, exc.__class__.__name__, exc)


class FailSoftRedisCache(RedisCache):
    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except Exception as exc:  # noqa: BLE001 - redis-py raises ConnectionError, TimeoutError, OSError...
            _warn("get", exc)
            return default

    def get_many(self, keys, version: int | None = None) -> dict:
        try:
            return super().get_many(keys, version)
        except Exception as exc:  # noqa: BLE001
            _warn("get_many", exc)
            return {}

    def has_key(self, key: str, version: int | None = None) -> bool:
        try:
            return super().has_key(key, version)
        except Exception as exc:  # noqa: BLE001
            _warn("has_key", exc)
            return False

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        try:
            super().set(key, value, timeout, version)
        except Exception as exc:  # noqa: BLE001
            _warn("set", exc)

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            return super().add(key, value, timeout, version)
        except Exception as exc:  # noqa: BLE001
            _warn("add", exc)
            return False

    def set_many(self, data: dict, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list:
        try:
            return super().set_many(data, timeout, version)
        except Exception as exc:  # noqa: BLE001
            _warn("set_many", exc)
            return list(data)

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            return super().touch(key, timeout, version)
        except Exception as exc:  # noqa: BLE001
            _warn("touch", exc)
            return False

    def delete(self, key: str, version: int | None = None) -> bool:
        try:
            return super().delete(key, version)
        except Exception as exc:  # noqa: BLE001
            _warn("delete", exc)
            return False

    def delete_many(self, keys, version: int | None = None) -> None:
        try:
            super().delete_many(keys, version)
        except Exception as exc:  # noqa: BLE001
            _warn("delete_many", exc)
