"""Bankr (crypto): a per-instance Bankr API key (and the wallet behind it), revoked at teardown.

ASSUMED CONTRACT, TO VERIFY AGAINST BANKR'S DOCS before enabling BANKR_API_KEY in production (the
reference only says "per-instance key or wallet; revoke", and Bankr's documentation could not be
reached from here; its public docs describe keys made in the web app or CLI, not by API):

    POST   {BANKR_API_URL}/agent/keys   {"name": "convos-<instance id>"}
           -> 200/201 {"id": "<key id>", "key": "<secret>", "walletAddress": "0x..."}
              (the same object under "data" is accepted too)
    DELETE {BANKR_API_URL}/agent/keys/{id}   -> 200/204; 404 when already revoked

Both with `Authorization: Bearer BANKR_API_KEY`. Everything Bankr-specific is in this module, so
fixing the routes or fields once the real API is known touches nothing else.

Orphan sweep: not covered. No list endpoint for the keys is known (the contract above is assumed),
so this plugin has no `list_owned`; a key whose creation answer was lost is found by its name
"convos-<instance id>" in Bankr's web app.

Credentials: the instance gets only its own minted key as BANKR_API_KEY, never the pool's key
(which could mint and revoke keys for every instance). resource_id is the key id (what revoking
needs); the wallet address is non-secret config.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from django.conf import settings

from services_app.plugins.base import POOL, USER, ProvisionedResource
from services_app.plugins.http import ProviderHttpError, request_json, require, user_value

logger = logging.getLogger(__name__)

PROVIDER = "Bankr"
KEYS_PATH = "/agent/keys"


class BankrPlugin:
    tool_id = "crypto"
    name = "Bankr"
    provisioning = (POOL, USER)
    always = False

    def enabled(self) -> tuple[bool, str]:
        if not settings.BANKR_API_KEY:
            return False, "BANKR_API_KEY is not set"
        if not settings.BANKR_API_URL:
            return False, "BANKR_API_URL is not set"
        return True, ""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{settings.BANKR_API_URL.rstrip('/')}{path}"
        return request_json(method, url, api_key=settings.BANKR_API_KEY, provider=PROVIDER, **kwargs)

    def create(self, *, instance_id: str) -> ProvisionedResource:
        name = f"convos-{instance_id}"
        answer = self._call("POST", KEYS_PATH, json={"name": name})
        if isinstance(answer, dict) and "key" not in answer and isinstance(answer.get("data"), dict):
            answer = answer["data"]
        where = f"{PROVIDER}: POST {KEYS_PATH}"
        key_id = str(require(answer, "id", where=where))
        secret = str(require(answer, "key", where=where))
        wallet = answer.get("walletAddress") or ""
        logger.info("bankr key %s created for %s", key_id, instance_id)
        return ProvisionedResource(
            resource_id=key_id,
            config={"name": name, "walletAddress": wallet},
            env_vars={"BANKR_API_KEY": secret},
        )

    def destroy(self, *, resource_id: str) -> None:
        try:
            self._call("DELETE", f"{KEYS_PATH}/{quote(resource_id, safe='')}")
        except ProviderHttpError as exc:
            if exc.status_code != 404:
                raise
        logger.info("bankr key %s revoked", resource_id)

    def user_env_vars(self, user_config: dict[str, Any]) -> dict[str, str]:
        return {"BANKR_API_KEY": user_value(user_config, "bankrApiKey", tool="crypto")}


plugin = BankrPlugin()
