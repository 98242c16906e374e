"""Convos invite URLs: `https://dev.convos.org/v2?i=<slug>` (dev, staging) and
`https://popup.convos.org/v2?i=<slug>` (production)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

HOSTS = {"dev.convos.org": "dev", "popup.convos.org": "production"}


def environment_of(xmtp_env: str) -> str:
    return "production" if xmtp_env == "production" else "dev"


def join_url_problem(url: str, *, xmtp_env: str) -> str | None:
    """Why `url` cannot be joined by instances of this pool, or None if it can."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname not in HOSTS or parts.path.rstrip("/") != "/v2":
        return "Must be a Convos invite URL like https://dev.convos.org/v2?i=..."
    if not parse_qs(parts.query).get("i", [""])[0]:
        return "Invite URL has no invite code (?i=...)"
    url_env, pool_env = HOSTS[parts.hostname], environment_of(xmtp_env)
    if url_env != pool_env:
        return f"Invite belongs to the Convos {url_env} environment; this pool serves {pool_env}"
    return None
