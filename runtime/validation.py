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

from runtime.config import load_config
from runtime.invites import InvalidInvite, parse_invite
from runtime.limits import AGENT_NAME_MAX, CREDENTIAL_VALUE_MAX, INSTRUCTIONS_MAX, MODEL_NAME_MAX

logger = logging.getLogger(__name__)


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
    metadata: dict[str, str] = field(default_factory=dict)  # published into the agent's Convos profile
    model: str | None = None  # the LLM for this claim: its own field, never in the public metadata


def _optional(body: dict[str, Any], name: str) -> Any:
    # JSON clients often send null for "not given"; treat it as absent.
    return body.get(name)


def validate_provision(body: Any, *, xmtp_env: str | None = None) -> ProvisionRequest:
    """The request, with joinUrl in its canonical form (runtime/invites.py, the rule the pool
    applies too). `xmtp_env` defaults to this process's own: the runtime's Config is loaded from
    the same environment (runtime/app.py)."""
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
        try:
            join_url = parse_invite(join_url, xmtp_env=xmtp_env or load_config().xmtp_env).url
        except InvalidInvite as exc:
            raise ValidationError("joinUrl", f"is refused: {exc}") from None

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
    metadata = dict(metadata)
    # An older pool sent the model in the metadata: take it out, it is not for the profile.
    model = _optional(body, "model") or metadata.pop("model", None)
    if model is not None and (not isinstance(model, str) or len(model) > MODEL_NAME_MAX):
        raise ValidationError("model", f"must be a string of at most {MODEL_NAME_MAX} characters")

    return ProvisionRequest(
        agent_name=agent_name,
        instructions=instructions,
        join_url=join_url,
        profile_image=profile_image,
        metadata=metadata,
        model=model or None,
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
