"""Validation of the ``POST /pool/provision`` request body.

Errors name the offending field first so the pool manager (and a human
reading its logs) can tell at a glance which part of its request was wrong.
Messages never echo field values: ``instructions`` is private and even an
invite URL is a capability that lets anyone join the conversation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runtime.config import INVITE_HOSTS
from runtime.limits import AGENT_NAME_MAX, CREDENTIAL_VALUE_MAX, INSTRUCTIONS_MAX

logger = logging.getLogger(__name__)

INVITE_PATH = "/v2"
_INVITE_HOSTS = frozenset(INVITE_HOSTS.values())


class ValidationError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name} {message}")
        self.field_name = field_name


@dataclass(frozen=True)
class ProvisionRequest:
    agent_name: str
    instructions: str = field(repr=False)
    join_url: str | None = field(default=None, repr=False)
    profile_image: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def is_invite_url(value: str) -> bool:
    """True for ``https://{dev,popup}.convos.org/v2?i=<slug>``."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme != "https" or parts.hostname not in _INVITE_HOSTS:
        return False
    # Reject userinfo/port tricks such as https://dev.convos.org@evil.example/.
    if parts.netloc != parts.hostname or parts.path != INVITE_PATH:
        return False
    slugs = parse_qs(parts.query).get("i", [])
    return len(slugs) == 1 and bool(slugs[0].strip())


def _optional(body: dict[str, Any], name: str) -> Any:
    # JSON clients often send null for "not given"; treat it as absent.
    return body.get(name)


def validate_provision(body: Any) -> ProvisionRequest:
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")

    if "agentName" not in body or body["agentName"] is None:
        raise ValidationError("agentName", "is required")
    agent_name = body["agentName"]
    if not isinstance(agent_name, str):
        raise ValidationError("agentName", "must be a string")
    if not agent_name.strip():
        raise ValidationError("agentName", "must not be empty")
    if len(agent_name) > AGENT_NAME_MAX:
        raise ValidationError("agentName", f"must be at most {AGENT_NAME_MAX} characters")

    if "instructions" not in body or body["instructions"] is None:
        raise ValidationError("instructions", "is required (it may be an empty string)")
    instructions = body["instructions"]
    if not isinstance(instructions, str):
        raise ValidationError("instructions", "must be a string")
    if len(instructions) > INSTRUCTIONS_MAX:
        raise ValidationError(
            "instructions", f"must be at most {INSTRUCTIONS_MAX} characters"
        )

    join_url = _optional(body, "joinUrl")
    if join_url is not None:
        if not isinstance(join_url, str):
            raise ValidationError("joinUrl", "must be a string")
        if not is_invite_url(join_url):
            raise ValidationError(
                "joinUrl",
                "must be a Convos invite URL like https://dev.convos.org/v2?i=... "
                "or https://popup.convos.org/v2?i=...",
            )

    profile_image = _optional(body, "profileImage")
    if profile_image is not None and not isinstance(profile_image, str):
        raise ValidationError("profileImage", "must be a string")

    metadata = _optional(body, "metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValidationError("metadata", "must be an object of string values")
    for value in metadata.values():
        if not isinstance(value, str):
            raise ValidationError("metadata", "values must be strings")

    return ProvisionRequest(
        agent_name=agent_name,
        instructions=instructions,
        join_url=join_url,
        profile_image=profile_image,
        metadata=dict(metadata),
    )


_VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def validate_credentials(body: Any) -> tuple[dict[str, str], list[str]]:
    """`{"set"?: {NAME: str}, "remove"?: [NAME]}` for POST /pool/credentials."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    values = body.get("set") or {}
    remove = body.get("remove") or []
    if not isinstance(values, dict):
        raise ValidationError("set", "must be an object of NAME: value")
    if not isinstance(remove, list):
        raise ValidationError("remove", "must be a list of names")
    for name, value in values.items():
        if not _VARIABLE_NAME.match(name):
            raise ValidationError(f"set.{name}", "is not a variable name (A-Z, 0-9, _)")
        if not isinstance(value, str) or len(value) > CREDENTIAL_VALUE_MAX:
            raise ValidationError(f"set.{name}", f"must be a string of at most {CREDENTIAL_VALUE_MAX} characters")
    for name in remove:
        if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
            raise ValidationError("remove", "entries must be variable names")
    return dict(values), list(remove)
