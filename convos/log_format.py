"""`LOG_FORMAT=json`: one JSON object per line, for an operator's log search.

Each line holds `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, and when
known `request_id` (the web request being served: convos/request_id.py) and `instance_id` (code that
logs `extra={"instance_id": ...}`, or runs inside `instance_context(...)` or a function decorated
`@logs_for_instance`: the claim, creation, destroy, reset and recovery, every transition);
`exc` holds a traceback.

Redaction happens before this formatter sees a record (the LogRecord factory and the handler's
filter, convos/log_redaction.py); the message and traceback are redacted once more here, so a
record that bypassed both still prints no secret.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TypeVar

from convos.redaction import redact

T = TypeVar("T")

# The id of the web request being served (set by RequestIdMiddleware), and of the instance being
# worked on (set by `instance_context`): every log line made meanwhile carries them.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
instance_id_var: ContextVar[str | None] = ContextVar("instance_id", default=None)


@contextmanager
def instance_context(instance_id: str) -> Iterator[None]:
    """Log lines made inside carry `instance_id` (when the record has none of its own)."""
    token = instance_id_var.set(str(instance_id))
    try:
        yield
    finally:
        instance_id_var.reset(token)


def logs_for_instance(func: Callable[..., T]) -> Callable[..., T]:
    """Decorator for an action on one instance: the log lines it makes (and everything it calls:
    services, the instance's client, transitions) carry its `instance_id` argument, keyword or
    first positional."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        instance_id = kwargs.get("instance_id", args[0] if args else None)
        if not instance_id:
            return func(*args, **kwargs)
        with instance_context(instance_id):
            return func(*args, **kwargs)

    return wrapper


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        # Django logs a request's 4xx/5xx after the middleware has returned, with the request attached.
        request_id = (getattr(record, "request_id", None) or request_id_var.get()
                      or getattr(getattr(record, "request", None), "request_id", None))
        if request_id:
            entry["request_id"] = str(request_id)
        instance_id = getattr(record, "instance_id", None) or instance_id_var.get()
        if instance_id:
            entry["instance_id"] = str(instance_id)
        if record.exc_info and record.exc_info[1] is not None:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
