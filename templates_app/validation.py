"""What a template may say, checked in one place for the API and the admin form.

Errors are DRF `ValidationError`s keyed by the API's field name (`agentName`, `model`,
`tools[1].id`), so the API's error JSON reads `tools[1].id: unknown tool 'teleport'`. The admin
turns the same messages into form errors. Services trust what comes out of here: validation is at
the boundaries, the registry is asked once per payload.
"""
from __future__ import annotations

import logging
from typing import Any

from rest_framework import serializers

from convos.errors import Unavailable
from convos.serializer_fields import StrictCharField
from runtime import limits
from services_app import facade as services
from templates_app.models import Visibility, default_model

logger = logging.getLogger(__name__)

# Name, instructions and model: the runtime protocol's limits (runtime/limits.py), one owner.
MAX_AGENT_NAME = limits.AGENT_NAME_MAX
MAX_INSTRUCTIONS = limits.INSTRUCTIONS_MAX
MAX_MODEL_NAME = limits.MODEL_NAME_MAX
MAX_TOOLS = 20
MAX_TOOL_ID = 64
PROVISIONING_MODES = ("pool", "user")
MODEL_KEYS = frozenset({"default", "allow_override"})
TOOL_KEYS = frozenset({"id", "provisioning"})
# Output-only keys a client may send back unchanged (GET, edit, PUT); they are ignored, never written.
READ_ONLY_KEYS = frozenset({"id", "creatorId", "createdAt", "updatedAt"})

# API name -> model field name.
FIELD_NAMES = {
    "agentName": "agent_name",
    "instructions": "instructions",
    "model": "model",
    "tools": "tools",
    "visibility": "visibility",
}


def _shown(value: Any, limit: int = 40) -> str:
    """A client's value quoted in a message, cut short: a 1 MB tool id must not come back whole."""
    text = value if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _names(keys: Any, limit: int = 5) -> str:
    names = sorted(keys, key=str)
    shown = ", ".join(_shown(k) for k in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def model_problems(value: Any) -> list[str]:
    """Why `value` is not a template model rule `{"default": str, "allow_override": bool}` (empty: fine)."""
    if not isinstance(value, dict):
        return ["must be an object with 'default' and 'allow_override'"]
    problems: list[str] = []
    missing, extra = MODEL_KEYS - value.keys(), value.keys() - MODEL_KEYS
    if missing:
        problems.append(f"missing {_names(missing)}")
    if extra:
        problems.append(f"unexpected key(s) {_names(extra)}: only 'default' and 'allow_override' are allowed")
    if "default" in value:
        default = value["default"]
        if not isinstance(default, str):
            problems.append("default must be a string")
        elif len(default) > MAX_MODEL_NAME:
            problems.append(f"default must be at most {MAX_MODEL_NAME} characters")
        elif default and not default.isprintable():
            # NUL and lone surrogates would make PostgreSQL refuse the jsonb (a 500, not a 400).
            problems.append("default must be printable text")
    if "allow_override" in value and not isinstance(value["allow_override"], bool):
        problems.append("allow_override must be true or false")
    return problems


def _registry() -> list[dict[str, Any]]:
    try:
        return services.registry()
    except services.ServicesError as exc:
        logger.warning("services registry unavailable for template validation: %s", exc.message)
        raise Unavailable(f"Cannot check tools: the services registry is unavailable ({exc.message})") from exc


def declarable_tools(registry: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """Tool id -> provisioning modes, for the tools a template may declare: the registry's tools
    that are not always provisioned (OpenRouter and the wallet come with every instance)."""
    entries = _registry() if registry is None else registry
    return {entry["toolId"]: list(entry.get("provisioning") or []) for entry in entries if not entry.get("always")}


def tools_problems(value: Any, *, registry: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """Why `value` is not a valid tools list, keyed by the path of the offending part
    (`tools`, `tools[1].id`, `tools[1].provisioning`). Empty: fine.

    Tools disabled in this deployment (no API key for the pool's account) may still be declared:
    whether the pool can provision them is the claim's question, not the template's."""
    if not isinstance(value, list):
        return {"tools": ["must be a list of {\"id\", \"provisioning\"} objects"]}
    if len(value) > MAX_TOOLS:
        return {"tools": [f"at most {MAX_TOOLS} tools (got {len(value)})"]}
    problems: dict[str, list[str]] = {}
    entries = (_registry() if registry is None else registry) if value else []
    known = declarable_tools(entries)
    always = {entry["toolId"] for entry in entries if entry.get("always")}
    seen: set[str] = set()
    for index, tool in enumerate(value):
        at = f"tools[{index}]"
        if not isinstance(tool, dict):
            problems[at] = ["must be an object with 'id' and 'provisioning'"]
            continue
        extra = tool.keys() - TOOL_KEYS
        if extra:
            problems.setdefault(at, []).append(f"unexpected key(s) {_names(extra)}: only 'id' and 'provisioning' are allowed")
        tool_id, mode = tool.get("id"), tool.get("provisioning")
        if "id" not in tool:
            problems[f"{at}.id"] = ["required"]
        elif not isinstance(tool_id, str) or not tool_id:
            problems[f"{at}.id"] = ["must be a non-empty string"]
        elif tool_id in always:
            problems[f"{at}.id"] = [f"tool {_shown(tool_id)} comes with every instance: templates cannot declare it"]
        elif len(tool_id) > MAX_TOOL_ID or tool_id not in known:
            problems[f"{at}.id"] = [f"unknown tool {_shown(tool_id)} (templates can declare: {', '.join(known) or 'none'})"]
        elif tool_id in seen:
            problems[f"{at}.id"] = [f"duplicate tool {_shown(tool_id)}"]
        if "provisioning" not in tool:
            problems[f"{at}.provisioning"] = ["required"]
        elif mode not in PROVISIONING_MODES:
            problems[f"{at}.provisioning"] = [f"must be 'pool' or 'user', not {_shown(mode)}"]
        elif isinstance(tool_id, str) and tool_id in known and mode not in known[tool_id]:
            supported = " or ".join(repr(m) for m in known[tool_id]) or "none"
            problems[f"{at}.provisioning"] = [f"tool {_shown(tool_id)} cannot be provisioned {mode!r} (it supports {supported})"]
        if isinstance(tool_id, str):
            seen.add(tool_id)
    return problems


class TemplateInputSerializer(serializers.Serializer):
    """A template as the API takes it. `partial=True` (PATCH) checks only the keys present;
    otherwise (POST, PUT) agentName and instructions are required and the rest get defaults.

    `validated_data` is keyed by model field name (`agent_name`, ...), ready for the services."""

    agentName = StrictCharField(max_length=MAX_AGENT_NAME, trim_whitespace=True)
    instructions = StrictCharField(max_length=MAX_INSTRUCTIONS, allow_blank=True, trim_whitespace=False)
    visibility = serializers.ChoiceField(choices=Visibility.values, required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Must be a JSON object"]})
        errors: dict[str, Any] = {}
        unknown = data.keys() - FIELD_NAMES.keys() - READ_ONLY_KEYS
        for key in sorted(unknown, key=str)[:5]:  # a few are enough to say what is wrong
            errors[str(key)[:60]] = ["unknown field"]
        # model and tools are JSON documents checked here rather than by DRF fields, so every error
        # names its exact place (tools[1].id) instead of DRF's index-less nesting.
        if "model" in data:
            if problems := model_problems(data["model"]):
                errors["model"] = problems
        if "tools" in data:
            errors.update(tools_problems(data["tools"]))
        try:
            values = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**exc.detail, **errors}
            values = {}
        if errors:
            raise serializers.ValidationError(errors)
        internal = {FIELD_NAMES[name]: value for name, value in values.items()}
        for name in ("model", "tools"):
            if name in data:
                internal[name] = data[name]
        if not self.partial:
            internal.setdefault("model", default_model())
            internal.setdefault("tools", [])
            internal.setdefault("visibility", Visibility.PRIVATE.value)
        return internal

