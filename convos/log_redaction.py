"""Secrets never reach a log line, whichever process writes it and whichever handler prints it.

Code never logs secrets on purpose; this is the second line of defence for the ones that arrive
inside provider error messages or exception text: bearer tokens, well-known key shapes, private
keys, and the configured secret values themselves.

Two layers: a LogRecord factory redacts every record as it is created, so handlers that are not
ours (Celery's worker and beat replace the root handlers, gunicorn has its own) only ever see
redacted records; and the filter on our own handler, for records made before the factory was
installed. `install_record_redaction()` runs when the settings load (web, commands, worker),
when the Celery app is imported (worker, beat) and from gunicorn.conf.py (gunicorn's master).
"""
from __future__ import annotations

import logging

from convos.redaction import redact


def redact_record(record: logging.LogRecord) -> None:
    """Replace the record's message and exception text with their redacted form (in place)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: logging reports it when it formats
        message = None
    if message is not None:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        # Exception text is formatted later by whatever handler prints it; format it now, redacted.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_record_redaction() -> None:
    """Redact every LogRecord of this process at creation (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redact_record(record)
        return record

    redacting_factory.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)
