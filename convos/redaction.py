"""Masking of secrets in text that may reach a log line, an API response or an admin page."""
from __future__ import annotations

import re
from functools import lru_cache

# Shapes of secrets whatever their source: bearer headers, OpenRouter and GitHub keys, private keys.
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"sk-or-v1-[A-Za-z0-9_-]{8,}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{8,}"),
    re.compile(r"0x[0-9a-fA-F]{64}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
]
_SECRET_SETTINGS = (
    "SECRET_KEY", "POOL_API_KEY", "SERVICES_API_KEY", "INSTANCE_SECRET_KEY", "RAILWAY_API_TOKEN", "RAILWAY_API_TOKENS",
    "GHCR_TOKEN", "OPENROUTER_MANAGEMENT_KEY", "AGENTMAIL_API_KEY", "TELNYX_API_KEY", "BANKR_API_KEY",
)


def mask(value: str | None, keep: int = 4) -> str:
    """Show only the last few characters of a secret, e.g. for an admin column."""
    if not value:
        return ""
    if len(value) <= keep * 3:
        return "…" * 3
    return "…" + value[-keep:]


@lru_cache(maxsize=1)
def _configured_secrets() -> tuple[str, ...]:
    try:
        from django.conf import settings

        values: list[str] = []
        for name in _SECRET_SETTINGS:
            value = getattr(settings, name, "")
            values.extend(value if isinstance(value, (list, tuple)) else [value])
        return tuple(v for v in values if isinstance(v, str) and len(v) >= 8)
    except Exception:  # settings not configured (e.g. inside the runtime); patterns still apply
        return ()


def redact(text: str) -> str:
    if not text:
        return text
    for secret in _configured_secrets():
        if secret in text:
            text = text.replace(secret, "[redacted]")
    text = _PATTERNS[0].sub(r"\1[redacted]", text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub("[redacted]", text)
    return text
