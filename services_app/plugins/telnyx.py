"""Telnyx: one US SMS-capable phone number per instance, bought with the pool's account.

Create: GET {TELNYX_API_URL}/available_phone_numbers?filter[country_code]=US&filter[features][]=sms
&filter[limit]=20, then POST /number_orders {"phone_numbers": [{"phone_number"}],
"messaging_profile_id", "customer_reference"} for one candidate. The messaging profile is
TELNYX_MESSAGING_PROFILE_ID, else the account's first (GET /messaging_profiles). 409/422 on the
order means someone else took the number: the next candidate is tried, searching once more when
the list runs out, at most MAX_ORDER_ATTEMPTS orders in all. An order is not idempotent, so a
5xx or timeout on it is not retried here (it may have bought the number); `customer_reference`
= "convos-<instance id>" lets an operator find such an orphan in Telnyx.

resource_id is the number in E.164 ("+15551234567"). The order's `phone_numbers[].id` is a
number-order record, not the phone number resource that DELETE /phone_numbers/{id} takes, and
the phone number resource may not exist until the order completes. So destroy resolves the number
with GET /phone_numbers?filter[phone_number]=... and deletes that id; no match means already gone.

Credentials (a security decision): Telnyx has no API keys narrower than the account (keys are made
in the portal and carry every privilege of the account: buying and releasing numbers, reading every
instance's messages). So in POOL mode the instance is given no key at all: only its number
(TELNYX_PHONE_NUMBER) and where the provider proxy is (POOL_URL). It sends through
POOL_URL/api/proxy/sms/send with its own INSTANCE_SERVICES_TOKEN, and services (services_app/proxy.py)
adds the pool's key and forces `from` to the instance's own number. In USER mode the user's own key
is theirs to hand to their agent.

Orphan sweep: GET /phone_numbers (`page[number]`, `page[size]`, `meta.total_pages`) lists the
account's numbers; the pool's are those whose `customer_reference` is "convos-<instance id>".
Telnyx documents customer_reference on phone numbers and filters by it; a number whose order's
reference did not carry over to the number is not listed (so never touched): an operator finds it
by the order's customer_reference in the portal.
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

PROVIDER = "Telnyx"
MAX_ORDER_ATTEMPTS = 5
MAX_SEARCHES = 2
SEARCH_PARAMS = [("filter[country_code]", "US"), ("filter[features][]", "sms"), ("filter[limit]", "20")]
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_TAKEN = (409, 422)


def proxy_env_vars(values: dict[str, str]) -> dict[str, str]:
    """`values` plus POOL_URL, the provider proxy's base (also a boot variable; given again so an
    instance that booted without it still finds the proxy), when this pool has one."""
    return {**values, "POOL_URL": settings.POOL_URL} if settings.POOL_URL else dict(values)


class TelnyxPlugin:
    tool_id = "sms"
    name = "Telnyx"
    provisioning = (POOL, USER)
    always = False

    def enabled(self) -> tuple[bool, str]:
        if not settings.TELNYX_API_KEY:
            return False, "TELNYX_API_KEY is not set"
        if not settings.TELNYX_API_URL:
            return False, "TELNYX_API_URL is not set"
        return True, ""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{settings.TELNYX_API_URL.rstrip('/')}{path}"
        return request_json(method, url, api_key=settings.TELNYX_API_KEY, provider=PROVIDER, **kwargs)

    def _messaging_profile(self) -> str:
        if settings.TELNYX_MESSAGING_PROFILE_ID:
            return settings.TELNYX_MESSAGING_PROFILE_ID
        profiles = self._call("GET", "/messaging_profiles")
        data = profiles.get("data") if isinstance(profiles, dict) else None
        if isinstance(data, list) and not data:
            raise ProviderError(f"{PROVIDER}: the account has no messaging profile; create one or set TELNYX_MESSAGING_PROFILE_ID", permanent=True)
        return str(require(profiles, "data", 0, "id", where=f"{PROVIDER}: GET /messaging_profiles"))

    def _search(self) -> list[str]:
        found = self._call("GET", "/available_phone_numbers", params=SEARCH_PARAMS)
        data = found.get("data") if isinstance(found, dict) else None
        if not isinstance(data, list):
            raise ProviderError(f"{PROVIDER}: GET /available_phone_numbers: malformed response (no data)", permanent=False)
        return [n["phone_number"] for n in data if isinstance(n, dict) and isinstance(n.get("phone_number"), str)]

    def create(self, *, instance_id: str) -> ProvisionedResource:
        profile = self._messaging_profile()
        tried: set[str] = set()
        for _ in range(MAX_SEARCHES):
            candidates = [n for n in self._search() if n not in tried]
            if not candidates:
                break
            for number in candidates:
                if len(tried) >= MAX_ORDER_ATTEMPTS:
                    break
                tried.add(number)
                body = {"phone_numbers": [{"phone_number": number}], "messaging_profile_id": profile, "customer_reference": f"convos-{instance_id}"}
                try:
                    order = self._call("POST", "/number_orders", json=body)
                except ProviderHttpError as exc:
                    if exc.status_code in _TAKEN:
                        logger.info("telnyx number %s was taken (HTTP %s); trying the next", number, exc.status_code)
                        continue
                    raise
                return self._ordered(order, number, profile, instance_id)
            if len(tried) >= MAX_ORDER_ATTEMPTS:
                break
        raise ProviderError(f"{PROVIDER}: no US SMS number could be ordered ({len(tried)} tried)", permanent=False)

    def _ordered(self, order: Any, number: str, profile: str, instance_id: str) -> ProvisionedResource:
        data = require(order, "data", where=f"{PROVIDER}: POST /number_orders")
        ordered = data.get("phone_numbers") if isinstance(data, dict) else None
        first = ordered[0] if isinstance(ordered, list) and ordered and isinstance(ordered[0], dict) else {}
        phone_number = first.get("phone_number") or number
        logger.info("telnyx number %s ordered for %s", phone_number, instance_id)
        return ProvisionedResource(
            resource_id=phone_number,
            config={"phone_number": phone_number, "messaging_profile_id": profile,
                    "order_id": data.get("id", ""), "order_status": data.get("status", "")},
            # Never the pool's account key: the instance sends through the proxy (module docstring).
            env_vars=proxy_env_vars({"TELNYX_PHONE_NUMBER": phone_number, "TELNYX_MESSAGING_PROFILE_ID": profile}),
        )

    def destroy(self, *, resource_id: str) -> None:
        number_id = resource_id
        if resource_id.startswith("+"):
            found = self._call("GET", "/phone_numbers", params=[("filter[phone_number]", resource_id)])
            data = found.get("data") if isinstance(found, dict) else None
            if not isinstance(data, list):
                raise ProviderError(f"{PROVIDER}: GET /phone_numbers: malformed response (no data)", permanent=False)
            if not data:
                # Released already (or, rarely, its order never completed): nothing to delete.
                logger.warning("telnyx number %s not found on the account; counting it as released", resource_id)
                return
            number_id = str(require(data, 0, "id", where=f"{PROVIDER}: GET /phone_numbers"))
        try:
            self._call("DELETE", f"/phone_numbers/{quote(number_id, safe='')}")
        except ProviderHttpError as exc:
            if exc.status_code != 404:
                raise
        logger.info("telnyx number %s released", resource_id)

    def list_owned(self) -> list[OwnedResource]:
        owned: list[OwnedResource] = []
        for number in range(1, MAX_LIST_PAGES + 1):
            answer = self._call("GET", "/phone_numbers", params=[("page[number]", str(number)), ("page[size]", "250")])
            data = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(data, list):
                raise ProviderError(f"{PROVIDER}: GET /phone_numbers: malformed response (no data)", permanent=False)
            for entry in data:
                if not isinstance(entry, dict) or not isinstance(entry.get("phone_number"), str):
                    continue
                instance_id = owned_instance_id(str(entry.get("customer_reference") or ""), NAME_PREFIX)
                if instance_id:
                    created = parse_datetime(str(entry.get("purchased_at") or entry.get("created_at") or ""))
                    owned.append(OwnedResource(resource_id=entry["phone_number"], name=str(entry["customer_reference"]),
                                               instance_id=instance_id, created_at=created))
            total = ((answer.get("meta") or {}).get("total_pages")) if isinstance(answer.get("meta"), dict) else None
            if not data or not isinstance(total, int) or number >= total:
                return owned
        raise ProviderError(f"{PROVIDER}: GET /phone_numbers listing exceeded {MAX_LIST_PAGES} pages")

    def user_env_vars(self, user_config: dict[str, Any]) -> dict[str, str]:
        api_key = user_value(user_config, "telnyxApiKey", tool="sms")
        field = "telnyxPhoneNumber"
        if isinstance(user_config, dict) and not user_config.get(field) and user_config.get("telnyxPhone"):
            field = "telnyxPhone"  # the seed's architecture doc spells it this way
        phone = user_value(user_config, field, tool="sms", pattern=E164, hint="must be an E.164 number: + then 7 to 15 digits")
        env = {"TELNYX_API_KEY": api_key, "TELNYX_PHONE_NUMBER": phone}
        profile = user_value(user_config, "telnyxMessagingProfileId", tool="sms", required=False)
        if profile:
            env["TELNYX_MESSAGING_PROFILE_ID"] = profile
        return env


plugin = TelnyxPlugin()
