"""Wallet plugin: a local secp256k1 key and its EIP-55 address."""
from __future__ import annotations

import re

import pytest
import responses

from services_app.plugins import wallet
from services_app.plugins.base import POOL
from services_app.plugins.wallet import (
    SECP256K1_N,
    address_of,
    checksum_address,
    plugin,
)
from services_app.providers.base import ProviderError


def test_it_describes_itself():
    assert (plugin.tool_id, plugin.name, plugin.provisioning, plugin.always) == ("wallet", "Wallet", (POOL,), True)
    assert plugin.enabled() == (True, "")


@pytest.mark.parametrize(
    ("private_key", "address"),
    [
        (1, "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"),
        (2, "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"),
        (SECP256K1_N - 1, "0x80C0dbf239224071c59dD8970ab9d542E3414aB2"),
    ],
)
def test_it_derives_the_known_address_of_a_private_key(private_key, address):
    assert address_of(private_key) == address


@pytest.mark.parametrize(
    "address",
    [  # the EIP-55 specification's own examples
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_it_checksums_like_eip55(address):
    assert checksum_address(address.lower()) == address


def test_it_create_makes_a_fresh_key_and_keeps_only_the_address():
    with responses.RequestsMock():  # no provider call at all
        first = plugin.create(instance_id="abc")
        second = plugin.create(instance_id="def")
    key = first.env_vars["PRIVATE_WALLET_KEY"]
    assert re.fullmatch(r"0x[0-9a-f]{64}", key)
    assert 1 <= int(key, 16) < SECP256K1_N
    assert first.resource_id == address_of(int(key, 16)) == first.config["address"]
    assert first.config == {"address": first.resource_id}
    assert set(first.env_vars) == {"PRIVATE_WALLET_KEY", "WALLET_ADDRESS"} and first.env_vars["WALLET_ADDRESS"] == first.resource_id
    assert second.env_vars["PRIVATE_WALLET_KEY"] != key and second.resource_id != first.resource_id


def test_it_key_generation_rejects_draws_outside_the_curve_order(monkeypatch):
    draws = iter([b"\x00" * 32, SECP256K1_N.to_bytes(32, "big"), b"\xff" * 32, (1).to_bytes(32, "big")])
    monkeypatch.setattr(wallet.secrets, "token_bytes", lambda n: next(draws))
    resource = plugin.create(instance_id="abc")
    assert resource.env_vars["PRIVATE_WALLET_KEY"] == "0x" + "00" * 31 + "01"
    assert resource.resource_id == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"


def test_it_destroy_forgets_and_user_mode_is_refused():
    plugin.destroy(resource_id="0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
    with pytest.raises(ProviderError) as raised:
        plugin.user_env_vars({"privateWalletKey": "0x01"})
    assert raised.value.permanent is True
