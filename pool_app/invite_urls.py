"""The pool's door to the invite rule, which runtime/invites.py owns (the runtime must apply the
same rule and its image ships runtime/ alone): a joinUrl as this pool's instances will join it."""
from __future__ import annotations

from runtime.invites import InvalidInvite, parse_invite

__all__ = ["InvalidInvite", "normalize_join_url"]


def normalize_join_url(value: str, *, xmtp_env: str) -> str:
    """The canonical link (what the instance joins and the duplicate-join check compares), or
    InvalidInvite, a 400 saying why, for a link that instances on `xmtp_env` cannot join."""
    return parse_invite(value, xmtp_env=xmtp_env).url
