"""Domain errors that carry their HTTP meaning, raised by services and mapped by the API layer."""
from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"
    # Seconds a client is told to wait (Retry-After): the pool refills in seconds, not minutes.
    retry_after_s = 2


class UpstreamFailed(DomainError):
    status_code = 502
    code = "upstream_failed"
