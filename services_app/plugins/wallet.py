"""Wallet: a fresh Ethereum (secp256k1) key pair per instance, made locally; nothing to call.

The private key (`0x` + 64 hex) goes to the instance once as PRIVATE_WALLET_KEY and is never stored,
logged or shown again; services keeps only the address (resource_id and config["address"]).
Destroy just forgets: funds left at the address are out of reach once the instance is gone.

The curve and the hash come from maintained libraries (coincurve wraps libsecp256k1; pycryptodome
provides Keccak-256, which is not the SHA3-256 in hashlib), imported on first use so that a missing
one disables this tool with a reason instead of breaking the whole registry.
"""
from __future__ import annotations

import logging
import secrets
from typing import Any

from services_app.plugins.base import POOL, ProviderError, ProvisionedResource

logger = logging.getLogger(__name__)

# Order of the secp256k1 group: a private key is an integer in [1, N - 1].
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _keccak256(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(digest_bits=256, data=data).digest()


def new_private_key() -> int:
    # Rejection sampling keeps the key uniform over [1, N - 1]; a 256-bit draw lands outside
    # with probability about 2**-128.
    while True:
        candidate = int.from_bytes(secrets.token_bytes(32), "big")
        if 1 <= candidate < SECP256K1_N:
            return candidate


def checksum_address(address: str) -> str:
    """EIP-55: upper-case each hex letter whose nibble in keccak(lowercase hex) is 8 or more."""
    hex_address = address.lower().removeprefix("0x")
    if len(hex_address) != 40 or any(c not in "0123456789abcdef" for c in hex_address):
        raise ValueError("an address is 20 bytes of hex")
    digest = _keccak256(hex_address.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_address))


def address_of(private_key: int) -> str:
    """The checksummed address: last 20 bytes of keccak-256(uncompressed public key without 0x04)."""
    from coincurve import PrivateKey

    public = PrivateKey(private_key.to_bytes(32, "big")).public_key.format(compressed=False)[1:]
    return checksum_address(_keccak256(public)[-20:].hex())


class WalletPlugin:
    tool_id = "wallet"
    name = "Wallet"
    provisioning = (POOL,)
    always = True

    def enabled(self) -> tuple[bool, str]:
        try:
            import coincurve  # noqa: F401
            from Crypto.Hash import keccak  # noqa: F401
        except ImportError as exc:
            return False, f"the {exc.name} package is not installed"
        return True, ""

    def create(self, *, instance_id: str) -> ProvisionedResource:
        try:
            private_key = new_private_key()
            address = address_of(private_key)
        except ImportError as exc:
            raise ProviderError(f"wallet: the {exc.name} package is not installed", permanent=True) from None
        logger.info("wallet %s created for %s", address, instance_id)
        return ProvisionedResource(
            resource_id=address,
            config={"address": address},
            # The address travels too: the agent shows it without deriving it (no crypto library in the image).
            env_vars={"PRIVATE_WALLET_KEY": "0x" + private_key.to_bytes(32, "big").hex(), "WALLET_ADDRESS": address},
        )

    def destroy(self, *, resource_id: str) -> None:
        logger.info("wallet %s forgotten", resource_id)

    def user_env_vars(self, user_config: dict[str, Any]) -> dict[str, str]:
        raise ProviderError("wallet is made by the pool only; it takes no userConfig", permanent=True)


plugin = WalletPlugin()
