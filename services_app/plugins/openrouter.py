"""OpenRouter: one spend-limited API key per instance, minted with the pool's management key.

POST {OPENROUTER_API_URL}/keys {"name", "limit", "limit_reset"} answers the secret once in the
top-level `key` and the key's id in `data.hash`; DELETE /keys/{hash} revokes it. GET /keys
(`offset` paging, `include_disabled`) lists the account's keys: the orphan sweep takes those named
"convos-<instance id>". The instance
gets only its own key (OPENROUTER_API_KEY); the management key never leaves services.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from services_app.plugins.base import MAX_LIST_PAGES, NAME_PREFIX, POOL, OwnedResource, ProviderError, ProvisionedResource
from services_app.plugins.http import ProviderHttpError, request_json, require
from services_app.providers.base import owned_instance_id

logger = logging.getLogger(__name__)

PROVIDER = "OpenRouter"
LIMIT_RESETS = ("daily", "weekly", "monthly")


def _limit(value: Any, *, source: str) -> float:
    try:
        limit = float(value)
    except (TypeError, ValueError):
        raise ProviderError(f"{source} must be a number of USD", permanent=True) from None
    if not math.isfinite(limit) or limit <= 0:
        raise ProviderError(f"{source} must be a positive number of USD", permanent=True)
    return limit


def _limit_reset(value: Any, *, source: str) -> str:
    reset = str(value or "").strip().lower()
    if reset not in LIMIT_RESETS:
        raise ProviderError(f"{source} must be one of {', '.join(LIMIT_RESETS)}", permanent=True)
    return reset


class OpenRouterPlugin:
    tool_id = "openrouter"
    name = "OpenRouter"
    provisioning = (POOL,)
    always = True

    def _base(self) -> str:
        return settings.OPENROUTER_API_URL.rstrip("/")

    def enabled(self) -> tuple[bool, str]:
        if not settings.OPENROUTER_MANAGEMENT_KEY:
            return False, "OPENROUTER_MANAGEMENT_KEY is not set"
        if not settings.OPENROUTER_API_URL:
            return False, "OPENROUTER_API_URL is not set"
        try:
            _limit(settings.OPENROUTER_KEY_LIMIT, source="OPENROUTER_KEY_LIMIT")
            _limit_reset(settings.OPENROUTER_KEY_LIMIT_RESET, source="OPENROUTER_KEY_LIMIT_RESET")
        except ProviderError as exc:
            return False, exc.message
        return True, ""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return request_json(method, f"{self._base()}{path}", api_key=settings.OPENROUTER_MANAGEMENT_KEY, provider=PROVIDER, **kwargs)

    def create(self, *, instance_id: str) -> ProvisionedResource:
        limit = _limit(settings.OPENROUTER_KEY_LIMIT, source="OPENROUTER_KEY_LIMIT")
        limit_reset = _limit_reset(settings.OPENROUTER_KEY_LIMIT_RESET, source="OPENROUTER_KEY_LIMIT_RESET")
        # The name ties an orphan (a create whose answer was lost) back to its instance.
        name = f"convos-{instance_id}"
        answer = self._call("POST", "/keys", json={"name": name, "limit": limit, "limit_reset": limit_reset})
        where = f"{PROVIDER}: POST /keys"
        key = require(answer, "key", where=where)
        key_hash = require(answer, "data", "hash", where=where)
        logger.info("openrouter key %s created for %s", key_hash, instance_id)
        return ProvisionedResource(
            resource_id=str(key_hash),
            config={"name": name, "limit": limit, "limit_reset": limit_reset},
            env_vars={"OPENROUTER_API_KEY": str(key)},
        )

    def destroy(self, *, resource_id: str) -> None:
        try:
            self._call("DELETE", f"/keys/{resource_id}")
        except ProviderHttpError as exc:
            if exc.status_code != 404:
                raise
        logger.info("openrouter key %s revoked", resource_id)

    def list_owned(self) -> list[OwnedResource]:
        owned: list[OwnedResource] = []
        seen: set[str] = set()
        offset = 0
        for _ in range(MAX_LIST_PAGES):
            answer = self._call("GET", "/keys", params=[("offset", str(offset)), ("include_disabled", "true")])
            page = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(page, list):
                raise ProviderError(f"{PROVIDER}: GET /keys: malformed response (no data)", permanent=False)
            fresh = [k for k in page if isinstance(k, dict) and k.get("hash") and str(k["hash"]) not in seen]
            if not fresh:  # the end, or an API that ignores `offset` and answers the same page again
                return owned
            for key in fresh:
                seen.add(str(key["hash"]))
                instance_id = owned_instance_id(str(key.get("name") or ""), NAME_PREFIX)
                if instance_id:
                    created = parse_datetime(str(key.get("created_at") or key.get("createdAt") or ""))
                    owned.append(OwnedResource(resource_id=str(key["hash"]), name=str(key["name"]), instance_id=instance_id, created_at=created))
            offset += len(page)
        raise ProviderError(f"{PROVIDER}: GET /keys listing exceeded {MAX_LIST_PAGES} pages")

    def user_env_vars(self, user_config: dict[str, Any]) -> dict[str, str]:
        raise ProviderError("openrouter is provisioned by the pool only; it takes no userConfig", permanent=True)


plugin = OpenRouterPlugin()
