"""The tool plugin registry: every plugin, in the seed's teardown order.

Teardown order (seed): OpenRouter -> AgentMail -> Telnyx -> Bankr, then the infra project. The
wallet needs no provider call and comes last. `enabled` in the registry is about mode POOL (the
pool's own account is configured); mode USER only validates the user's credentials and is
available whenever the tool lists it.
"""
from __future__ import annotations

from typing import Any

from services_app.plugins import agentmail, bankr, openrouter, telnyx, wallet
from services_app.plugins.base import ProviderError, ToolPlugin

__all__ = ["TEARDOWN_ORDER", "all_plugins", "get_plugin", "registry"]

_PLUGINS: tuple[ToolPlugin, ...] = (openrouter.plugin, agentmail.plugin, telnyx.plugin, bankr.plugin, wallet.plugin)
_BY_ID: dict[str, ToolPlugin] = {p.tool_id: p for p in _PLUGINS}
TEARDOWN_ORDER: tuple[str, ...] = tuple(p.tool_id for p in _PLUGINS)


def all_plugins() -> list[ToolPlugin]:
    return list(_PLUGINS)


def get_plugin(tool_id: str) -> ToolPlugin:
    try:
        return _BY_ID[tool_id]
    except (KeyError, TypeError):
        raise ProviderError(f"unknown tool: {tool_id!r}", permanent=True) from None


def registry() -> list[dict[str, Any]]:
    """What GET /registry answers: each tool, its modes, and whether (and why not) it is enabled."""
    entries = []
    for plugin in _PLUGINS:
        enabled, reason = plugin.enabled()
        entries.append({
            "toolId": plugin.tool_id,
            "name": plugin.name,
            "provisioning": list(plugin.provisioning),
            "always": plugin.always,
            "enabled": enabled,
            "reason": "" if enabled else reason,
        })
    return entries
