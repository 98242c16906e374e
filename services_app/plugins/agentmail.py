"""AgentMail: one inbox per instance, reached with a key that can touch nothing but that inbox.

Create: POST {AGENTMAIL_API_URL}/inboxes {"username", "domain"?, "display_name", "client_id"}
answers `inbox_id`; `client_id` = "convos-<instance id>" makes it idempotent, so it is safe to
retry even after a lost answer. Then POST /inboxes/{inbox_id}/api-keys {"name"} mints an
inbox-scoped key (`api_key`, `api_key_id`).

Credentials (a security decision): the runtime's AGENTMAIL_API_KEY is that inbox-scoped key, never
the pool's organization key. An organization key in every instance would let any one agent (or
anyone who talks it into printing its environment) read, send from and delete every inbox of the
pool. The scoped key's blast radius is the instance's own inbox, so it is kept (an instance can
reach AgentMail directly); one without it (or a skill that prefers it) uses the provider proxy,
POOL_URL/api/proxy/email/* (services_app/proxy.py), which adds the pool's key for its own inbox only.

Destroy revokes the inbox's keys (GET, then DELETE /inboxes/{id}/api-keys/{api_key_id}) before
DELETE /inboxes/{id}: we do not rely on AgentMail cascading the delete to scoped keys.

Orphan sweep: GET /inboxes (`limit`, `page_token` -> `next_page_token`) lists the organization's
inboxes; the pool's are those whose username is the one create() gives ("convos-<instance id>"),
in AGENTMAIL_DOMAIN when it is set, with client_id "convos-<instance id>" when the listing shows one.
"""
from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.utils.dateparse import parse_datetime

from services_app.plugins.base import MAX_LIST_PAGES, NAME_PREFIX, POOL, USER, OwnedResource, ProviderError, ProvisionedResource
from services_app.plugins.http import ProviderHttpError, request_json, require, user_value
from services_app.providers.base import owned_instance_id

logger = logging.getLogger(__name__)

PROVIDER = "AgentMail"
DISPLAY_NAME = "Convos Agent"
_USERNAME_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def _username(instance_id: str) -> str:
    return _USERNAME_UNSAFE.sub("-", f"convos-{instance_id}".lower()).strip("-.")[:64]


class AgentMailPlugin:
    tool_id = "email"
    name = "AgentMail"
    provisioning = (POOL, USER)
    always = False

    def enabled(self) -> tuple[bool, str]:
        if not settings.AGENTMAIL_API_KEY:
            return False, "AGENTMAIL_API_KEY is not set"
        if not settings.AGENTMAIL_API_URL:
            return False, "AGENTMAIL_API_URL is not set"
        return True, ""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{settings.AGENTMAIL_API_URL.rstrip('/')}{path}"
        return request_json(method, url, api_key=settings.AGENTMAIL_API_KEY, provider=PROVIDER, **kwargs)

    def create(self, *, instance_id: str) -> ProvisionedResource:
        body: dict[str, Any] = {"username": _username(instance_id), "display_name": DISPLAY_NAME, "client_id": f"convos-{instance_id}"}
        if settings.AGENTMAIL_DOMAIN:
            body["domain"] = settings.AGENTMAIL_DOMAIN
        inbox = self._call("POST", "/inboxes", json=body, idempotent=True)
        inbox_id = str(require(inbox, "inbox_id", where=f"{PROVIDER}: POST /inboxes"))
        path = f"/inboxes/{quote(inbox_id, safe='@.')}/api-keys"
        try:
            # Not idempotent: a lost answer leaves an extra key on the inbox, revoked with it.
            minted = self._call("POST", path, json={"name": f"convos-{instance_id}"})
            secret = require(minted, "api_key", where=f"{PROVIDER}: POST {path}")
        except ProviderError:
            # Nothing records an inbox whose create failed, and a failed claim does not retry on
            # the same instance: delete it now rather than leave an orphan behind.
            self._forget_inbox(inbox_id)
            raise
        logger.info("agentmail inbox %s created for %s", inbox_id, instance_id)
        return ProvisionedResource(
            resource_id=inbox_id,
            config={
                "inbox_id": inbox_id,
                "email": inbox.get("email") or inbox_id,
                "display_name": inbox.get("display_name") or DISPLAY_NAME,
                "api_key_id": minted.get("api_key_id", ""),
            },
            env_vars={"AGENTMAIL_API_KEY": str(secret), "AGENTMAIL_INBOX_ID": inbox_id},
        )

    def destroy(self, *, resource_id: str) -> None:
        inbox = f"/inboxes/{quote(resource_id, safe='@.')}"
        try:
            listing = self._call("GET", f"{inbox}/api-keys")
            for key in (listing or {}).get("api_keys") or []:
                key_id = key.get("api_key_id") if isinstance(key, dict) else None
                if key_id:
                    self._delete(f"{inbox}/api-keys/{quote(str(key_id), safe='')}")
        except ProviderHttpError as exc:
            if exc.status_code != 404:  # 404: the inbox (and so its keys) is already gone
                raise
            logger.info("agentmail inbox %s already gone", resource_id)
            return
        self._delete(inbox)
        logger.info("agentmail inbox %s deleted", resource_id)

    def list_owned(self) -> list[OwnedResource]:
        owned: list[OwnedResource] = []
        token: str | None = None
        for _ in range(MAX_LIST_PAGES):
            params = [("limit", "100")] + ([("page_token", token)] if token else [])
            answer = self._call("GET", "/inboxes", params=params)
            inboxes = answer.get("inboxes") if isinstance(answer, dict) else None
            if not isinstance(inboxes, list):
                raise ProviderError(f"{PROVIDER}: GET /inboxes: malformed response (no inboxes)", permanent=False)
            for inbox in inboxes:
                found = self._owned(inbox) if isinstance(inbox, dict) else None
                if found:
                    owned.append(found)
            next_token = answer.get("next_page_token")
            if not next_token:
                return owned
            if next_token == token:
                raise ProviderError(f"{PROVIDER}: GET /inboxes listing did not advance")
            token = str(next_token)
        raise ProviderError(f"{PROVIDER}: GET /inboxes listing exceeded {MAX_LIST_PAGES} pages")

    @staticmethod
    def _owned(inbox: dict[str, Any]) -> OwnedResource | None:
        inbox_id = str(inbox.get("inbox_id") or "")
        username, _, domain = str(inbox.get("email") or inbox_id).partition("@")
        instance_id = owned_instance_id(username, NAME_PREFIX)
        if not inbox_id or not instance_id or _username(instance_id) != username:
            return None
        if settings.AGENTMAIL_DOMAIN and domain.lower() != settings.AGENTMAIL_DOMAIN.lower():
            return None
        if inbox.get("client_id") and inbox["client_id"] != f"convos-{instance_id}":
            return None  # same username, made by someone else
        return OwnedResource(resource_id=inbox_id, name=username, instance_id=instance_id,
                             created_at=parse_datetime(str(inbox.get("created_at") or "")))

    def _delete(self, path: str) -> None:
        try:
            self._call("DELETE", path)
        except ProviderHttpError as exc:
            if exc.status_code != 404:
                raise

    def _forget_inbox(self, inbox_id: str) -> None:
        try:
            self._delete(f"/inboxes/{quote(inbox_id, safe='@.')}")
        except ProviderError as exc:
            logger.warning("agentmail inbox %s left behind after a failed key mint: %s", inbox_id, exc.message)

    def user_env_vars(self, user_config: dict[str, Any]) -> dict[str, str]:
        return {
            "AGENTMAIL_API_KEY": user_value(user_config, "agentmailApiKey", tool="email"),
            "AGENTMAIL_INBOX_ID": user_value(user_config, "agentmailInboxId", tool="email"),
        }


plugin = AgentMailPlugin()
