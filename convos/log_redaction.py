"""A logging filter that masks secrets that slip into a log line.

Code never logs secrets on purpose; this is the second line of defence for the ones that arrive
inside provider error messages or exception text: bearer tokens, well-known key shapes, private
keys, and the configured secret values themselves.
"""
from __future__ import annotations

import logging

from convos.redaction import redact


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception text is formatted later by the handler; format it here, redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


