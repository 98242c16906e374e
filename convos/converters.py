"""URL path converters: ids that no row can have never reach a database (a NUL byte in an id
makes PostgreSQL raise, which would be a 500)."""
from __future__ import annotations


class IdConverter:
    regex = r"[A-Za-z0-9_-]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class ResourceIdConverter:
    """Provider resource ids: inbox addresses, phone numbers, hashes (anything but / and controls)."""

    regex = r"[^/\x00-\x1f]{1,200}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
