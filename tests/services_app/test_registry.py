"""The tool plugin registry: order, lookup, and what GET /registry lists."""
from __future__ import annotations

import pytest

from services_app.plugins import TEARDOWN_ORDER, all_plugins, get_plugin, registry
from services_app.providers.base import ProviderError


@pytest.fixture
def all_configured(settings):
    settings.OPENROUTER_MANAGEMENT_KEY = "sk-or-v1-mgmt0123456789"
    settings.OPENROUTER_KEY_LIMIT_RESET = "monthly"
    settings.AGENTMAIL_API_KEY = "am_key0123456789"
    settings.TELNYX_API_KEY = "KEY0123456789"
    settings.BANKR_API_KEY = "bk_0123456789"
    return settings


def test_it_plugins_come_in_the_seeds_teardown_order():
    assert TEARDOWN_ORDER == ("openrouter", "email", "sms", "crypto", "wallet")
    assert [p.tool_id for p in all_plugins()] == list(TEARDOWN_ORDER)


def test_it_finds_a_plugin_by_tool_id():
    assert get_plugin("sms").name == "Telnyx"
    assert all(get_plugin(p.tool_id) is p for p in all_plugins())


@pytest.mark.parametrize("tool_id", ["fax", "", None])
def test_it_an_unknown_tool_is_a_permanent_provider_error(tool_id):
    with pytest.raises(ProviderError) as raised:
        get_plugin(tool_id)
    assert raised.value.permanent is True and raised.value.message.startswith("unknown tool")


def test_it_every_plugin_has_the_whole_interface():
    for plugin in all_plugins():
        for attribute in ("tool_id", "name", "provisioning", "always", "enabled", "create", "destroy", "user_env_vars"):
            assert hasattr(plugin, attribute), (plugin, attribute)
        assert set(plugin.provisioning) <= {"pool", "user"} and plugin.provisioning


def test_it_the_registry_lists_every_tool_enabled_when_configured(all_configured):
    assert registry() == [
        {"toolId": "openrouter", "name": "OpenRouter", "provisioning": ["pool"], "always": True, "enabled": True, "reason": ""},
        {"toolId": "email", "name": "AgentMail", "provisioning": ["pool", "user"], "always": False, "enabled": True, "reason": ""},
        {"toolId": "sms", "name": "Telnyx", "provisioning": ["pool", "user"], "always": False, "enabled": True, "reason": ""},
        {"toolId": "crypto", "name": "Bankr", "provisioning": ["pool", "user"], "always": False, "enabled": True, "reason": ""},
        {"toolId": "wallet", "name": "Wallet", "provisioning": ["pool"], "always": True, "enabled": True, "reason": ""},
    ]


def test_it_the_registry_says_why_a_tool_is_disabled(all_configured):
    all_configured.OPENROUTER_KEY_LIMIT_RESET = "hourly"
    all_configured.AGENTMAIL_API_KEY = ""
    all_configured.TELNYX_API_KEY = ""
    all_configured.BANKR_API_KEY = ""
    listed = {entry["toolId"]: (entry["enabled"], entry["reason"]) for entry in registry()}
    assert listed == {
        "openrouter": (False, "OPENROUTER_KEY_LIMIT_RESET must be one of daily, weekly, monthly"),
        "email": (False, "AGENTMAIL_API_KEY is not set"),
        "sms": (False, "TELNYX_API_KEY is not set"),
        "crypto": (False, "BANKR_API_KEY is not set"),
        "wallet": (True, ""),
    }
