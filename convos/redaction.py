"""Masking of secrets in text that may reach a log line, an API response or an admin page."""
from __future__ import annotations

import re

# Shapes of secrets whatever their source: bearer headers, OpenRouter and GitHub keys, private keys.
_PATTERNS = [
    # A class per letter instead of (?i): twice as fast, and the scan runs over every log line.
    re.compile(r"([Bb][Ee][Aa][Rr][Ee][Rr]\s{1,8})[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"sk-or-v1-[A-Za-z0-9_-]{8,}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{8,}"),
    re.compile(r"0x[0-9a-fA-F]{64}"),
]
# PEM private keys: from a BEGIN marker to the next END marker. The lazy regex alone is quadratic
# on crafted text (every BEGIN with no END after it rescans the rest of the text), and redaction
# runs on text an instance controls; so it only runs up to the last END marker, found by searching
# the reversed text. Up to there every BEGIN's scan stops at an END that its match then consumes:
# one pass.
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?-----END [A-Z ]{0,40}PRIVATE KEY-----")
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----")
_KEY_END_REVERSED = re.compile(r"-----YEK ETAVIRP[A-Z ]{0,40} DNE-----")
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


_secrets_cache: tuple[str, ...] | None = None


def _configured_secrets() -> tuple[str, ...]:
    """The configured secret values, read once the settings are loaded (not cached before: a line
    logged while the settings load must not freeze an empty list)."""
    global _secrets_cache
    if _secrets_cache is not None:
        return _secrets_cache
    try:
        from django.conf import settings

        if not settings.configured:  # never make Django load the settings from inside logging
            return ()
        values: list[str] = []
        for name in _SECRET_SETTINGS:
            value = getattr(settings, name, "")
            values.extend(value if isinstance(value, (list, tuple)) else [value])
    except Exception:  # noqa: BLE001 - no Django (the runtime), or broken settings: the patterns still apply
        return ()
    _secrets_cache = tuple(v for v in values if isinstance(v, str) and len(v) >= 8)
    return _secrets_cache


def redact(text: str) -> str:
    if not text:
        return text
    for secret in _configured_secrets():
        if secret in text:
            text = text.replace(secret, "[redacted]")
    text = _PATTERNS[0].sub(r"\1[redacted]", text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub("[redacted]", text)
    return _redact_private_keys(text)


def _redact_private_keys(text: str) -> str:
    if "PRIVATE KEY-----" not in text:
        return text
    last_end = _KEY_END_REVERSED.search(text[::-1])
    cut = 0 if last_end is None else len(text) - last_end.start()
    head, tail = _KEY_BLOCK.sub("[redacted]", text[:cut]), text[cut:]
    # A key with no END after it (a message cut short) is redacted to the end of the text.
    dangling = _KEY_BEGIN.search(tail)
    return head + (tail[:dangling.start()] + "[redacted]" if dangling else tail)
