"""What a Convos invite link is, and its one canonical spelling.

The pool's API, its CLI, services' fake instances and the runtime all apply this one rule, so a link
the pool takes is a link its instance joins: a link only the pool accepted used to cost an instance
a reset and the client a 502. Standard library only, because the runtime image ships runtime/ alone.

Accepted, as Convos clients produce them:

    https://dev.convos.org/v2?i=<slug>     dev and staging pools (/v2/ is normalised to /v2)
    https://popup.convos.org/v2?i=<slug>   production pools
    https://convos.app/join/<slug>         any pool: these three name no environment
    convos://join/<slug>
    <slug>

Canonical: ``https://<this environment's invite host>/v2?i=<slug>``, what the instance hands to the
Convos CLI and what the pool's duplicate-join check compares. Other query parameters and fragments
(share-sheet tracking) are dropped. Refused: the other environment's host, http, user info, ports, a
missing or repeated ``i``, other hosts, schemes and paths, a slug outside the Convos alphabet, and a
link longer than limits.JOIN_URL_MAX as given or once canonical (the pool stores it in a column that size).

Messages never echo the link: an invite is a capability that lets anyone join the conversation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from runtime.config import INVITE_HOSTS
from runtime.limits import JOIN_URL_MAX

DEV_HOST = INVITE_HOSTS["dev"]
PRODUCTION_HOST = INVITE_HOSTS["production"]
NEUTRAL_HOST = "convos.app"  # universal links: the app picks the environment, so any pool may join

# The Convos environment each web host belongs to (the CLI's own names: there is no staging).
_ENVIRONMENT_OF = {DEV_HOST: "dev", PRODUCTION_HOST: "production"}

# A slug is base64url with '*' inserted every 300 characters (runtime/CONVOS_CLI.md §2);
# encodeURIComponent leaves all of these alone, so the canonical URL needs no escaping.
_SLUG = re.compile(r"[A-Za-z0-9_*-]+")


class InvalidInvite(ValueError):
    """Not a link this pool's instances can join; the message says why, for a human."""


@dataclass(frozen=True)
class Invite:
    slug: str
    url: str  # canonical


def invite_host(xmtp_env: str) -> str:
    # Anything but production is served by dev.convos.org, as the Convos CLI does (create.js:162-166).
    return INVITE_HOSTS.get(xmtp_env.strip().lower(), DEV_HOST)


def invite_url(slug: str, *, xmtp_env: str) -> str:
    """The canonical link to `slug` in `xmtp_env`."""
    return f"https://{invite_host(xmtp_env)}/v2?i={slug}"


def parse_invite(value: str, *, xmtp_env: str) -> Invite:
    """The invite `value` names, for a pool (or instance) on `xmtp_env`; InvalidInvite if none."""
    if not isinstance(value, str):
        raise InvalidInvite("Invite link must be text")
    text = value.strip()
    if not text:
        raise InvalidInvite("Invite link is empty")
    if len(text) > JOIN_URL_MAX:
        raise InvalidInvite(f"Invite link is too long (at most {JOIN_URL_MAX} characters)")
    # urlsplit silently drops tabs and newlines inside a URL; a pasted link that has any is damaged.
    if any(not "!" <= ch <= "~" for ch in text):
        raise InvalidInvite("Invite link has spaces or characters that no invite link has")
    slug = text if _SLUG.fullmatch(text) else _slug_of_link(text, xmtp_env)
    if not slug.strip("*"):
        raise InvalidInvite("Invite link has no invite code")
    if not _SLUG.fullmatch(slug):
        raise InvalidInvite("Invite code has characters Convos never uses (only A-Z a-z 0-9 - _ and *)")
    url = invite_url(slug, xmtp_env=xmtp_env)
    if len(url) > JOIN_URL_MAX:
        raise InvalidInvite(f"Invite link is too long (at most {JOIN_URL_MAX} characters)")
    return Invite(slug=slug, url=url)


def _slug_of_link(text: str, xmtp_env: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [IPv6] host
        raise InvalidInvite(f"Not a Convos invite link; {_expected(xmtp_env)}") from None
    if parts.scheme == "convos":
        if parts.netloc.lower() != "join":
            raise InvalidInvite("Convos app links must look like convos://join/<invite code>")
        return _path_slug(parts.path, prefix="/", xmtp_env=xmtp_env)
    host = parts.hostname
    if parts.scheme not in ("https", "http") or host not in (DEV_HOST, PRODUCTION_HOST, NEUTRAL_HOST):
        raise InvalidInvite(f"Not a Convos invite link; {_expected(xmtp_env)}")
    if parts.scheme != "https":
        raise InvalidInvite("Invite link must use https")
    # The netloc must be the bare host: user info can disguise the host
    # (https://dev.convos.org@evil.example/), and Convos serves no other port.
    if "@" in parts.netloc:
        raise InvalidInvite("Invite link must not carry a user name or password")
    if ":" in parts.netloc:
        raise InvalidInvite("Invite link must not name a port")
    if host == NEUTRAL_HOST:
        return _path_slug(parts.path, prefix="/join/", xmtp_env=xmtp_env)
    own = invite_host(xmtp_env)
    if host != own:
        raise InvalidInvite(f"Invite belongs to the Convos {_ENVIRONMENT_OF[host]} environment; "
                            f"this pool serves {xmtp_env}")
    if parts.path not in ("/v2", "/v2/"):
        raise InvalidInvite(f"Invite link has the wrong path; {_expected(xmtp_env)}")
    codes = parse_qs(parts.query, keep_blank_values=True).get("i", [])
    if len(codes) > 1:
        raise InvalidInvite("Invite link has more than one invite code (?i= is repeated)")
    if not codes or not codes[0]:
        raise InvalidInvite("Invite link has no invite code (?i=...)")
    return codes[0]


def _path_slug(path: str, *, prefix: str, xmtp_env: str) -> str:
    """The slug of a `<prefix><slug>` path (one trailing slash is normalised away, as for /v2/)."""
    if not path.startswith(prefix):
        raise InvalidInvite(f"Invite link has the wrong path; {_expected(xmtp_env)}")
    slug = unquote(path[len(prefix):].removesuffix("/"))
    if "/" in slug:
        raise InvalidInvite(f"Invite link has the wrong path; {_expected(xmtp_env)}")
    return slug


def _expected(xmtp_env: str) -> str:
    return (f"expected https://{invite_host(xmtp_env)}/v2?i=<invite code>, https://{NEUTRAL_HOST}/join/<invite code>, "
            "convos://join/<invite code> or the invite code itself")
