"""Provider proxy: an instance's email and SMS calls go through services, which holds the keys.

Mounted at POOL_URL/api/proxy/ (the routes production's skills call). The caller authenticates with
its own INSTANCE_SERVICES_TOKEN; the pool's SERVICES_API_KEY is refused (the pool has no inbox or
number of its own). Each call may touch only the caller's live, pool-provisioned resource: the inbox
or number is looked up from its instance_services row, never taken from the request, and a request
naming another inbox (in the path or as `inbox_id`) or another `from` number is a 403.

    GET  /api/proxy/info                                   {instanceId, email, phone}
    POST /api/proxy/email/send                             AgentMail POST /inboxes/{own}/messages/send
    GET  /api/proxy/email/messages                         AgentMail GET  /inboxes/{own}/messages
    GET  /api/proxy/email/threads                          AgentMail GET  /inboxes/{own}/threads
    POST /api/proxy/email/inboxes/{inbox}/messages/send    the same, upstream's shape (403 unless own)
    GET  /api/proxy/email/inboxes/{inbox}/messages         the same, upstream's shape (403 unless own)
    POST /api/proxy/sms/send                               Telnyx POST /messages, `from` = own number

Upstream answers come back with their status and JSON. An upstream 4xx comes back as itself with a
short, scrubbed message, except a refusal of the pool's own key (401/403), a 5xx, a timeout or a
non-JSON answer, which are 502: the instance cannot fix those. Nothing here logs a key or a body.
"""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convos.parsers import json_object_body
from services_app.auth import ServicesAuthentication
from services_app.db import DB
from services_app.models import InstanceService, ResourceStatus
from services_app.plugins.http import provider_message
from services_app.services import ServicesError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # an email with a small attachment; far below DATA_UPLOAD_MAX_MEMORY_SIZE
EMAIL_FIELDS = ("to", "cc", "bcc", "reply_to", "subject", "text", "html", "labels", "attachments", "headers")
EMAIL_QUERY = ("limit", "page_token", "labels", "before", "after", "ascending")
SMS_FIELDS = ("to", "text", "subject", "media_urls")
_NOT_THE_CALLERS = (401, 403, 407)  # the provider refused the pool's key: not the instance's to fix


class IsInstance(BasePermission):
    message = "Only an instance may use the provider proxy, with its own services token"

    def has_permission(self, request, view) -> bool:
        return bool(getattr(request.user, "instance_id", None))


def _own(instance_id: str, tool_id: str) -> InstanceService:
    row = (InstanceService.objects.using(DB)
           .filter(instance_id=instance_id, tool_id=tool_id, status=ResourceStatus.ACTIVE).first())
    if row is None:
        what = {"email": "inbox", "sms": "phone number"}[tool_id]
        raise ServicesError(f"No {what} provisioned by the pool for this instance", status_code=404, code="not_provisioned")
    return row


def _body(request: Request) -> dict[str, Any]:
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
        raise ServicesError(f"Request body is larger than {MAX_BODY_BYTES} bytes", status_code=413, code="too_large")
    data = json_object_body(request)
    if len(json.dumps(data)) > MAX_BODY_BYTES:
        raise ServicesError(f"Request body is larger than {MAX_BODY_BYTES} bytes", status_code=413, code="too_large")
    return data


def _picked(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in fields if k in data}


def _forward(provider: str, method: str, url: str, *, api_key: str, caller: str, body: Any = None,
             params: list[tuple[str, str]] | None = None) -> Response:
    """One call upstream with the pool's key (no retry: a send that timed out may have gone out)."""
    where = f"{provider}: {method} {urlsplit(url).path}"
    if not api_key:
        raise ServicesError(f"{provider} is not configured on this pool", status_code=503, code="not_configured")
    try:
        answer = requests.request(method, url, json=body, params=params, timeout=float(settings.PROVIDER_TIMEOUT_S),
                                  allow_redirects=False, headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                                                                  "User-Agent": "convos-pool-proxy"})
    except requests.RequestException as exc:
        logger.warning("proxy %s for %s: no answer (%s)", where, caller, exc.__class__.__name__)
        raise ServicesError(f"{where} could not be reached ({exc.__class__.__name__})", status_code=502, code="upstream_unreachable") from None
    logger.info("proxy %s for %s: HTTP %s", where, caller, answer.status_code)
    if answer.status_code >= 400:
        detail = provider_message(answer, api_key)
        message = f"{where} answered HTTP {answer.status_code}" + (f": {detail}" if detail else "")
        status = 502 if answer.status_code >= 500 or answer.status_code in _NOT_THE_CALLERS else answer.status_code
        return Response({"error": message, "code": "upstream_error", "upstreamStatus": answer.status_code}, status=status)
    if not answer.content:
        return Response({}, status=answer.status_code)
    try:
        payload = answer.json()
    except ValueError:
        raise ServicesError(f"{where}: malformed response (not JSON)", status_code=502, code="upstream_malformed") from None
    return Response(payload, status=answer.status_code)


_EMAIL_SEND = inline_serializer("ProxyEmailSend", fields={
    "to": serializers.JSONField(help_text="An address or a list of them (required)."),
    **{name: serializers.JSONField(required=False) for name in EMAIL_FIELDS if name != "to"},
    "inbox_id": serializers.CharField(required=False, help_text="If given, must be the caller's own inbox."),
})
_SMS_SEND = inline_serializer("ProxySmsSend", fields={
    "to": serializers.CharField(help_text="A phone number (required)."),
    **{name: serializers.JSONField(required=False) for name in SMS_FIELDS if name != "to"},
    "from": serializers.CharField(required=False, help_text="If given, must be the caller's own number."),
})
_INFO = inline_serializer("ProxyInfo", fields={"instanceId": serializers.CharField(), "email": serializers.CharField(allow_null=True),
                                               "phone": serializers.CharField(allow_null=True)})


class _ProxyApi(APIView):
    authentication_classes = [ServicesAuthentication]
    permission_classes = [IsInstance]

    def instance_id(self, request: Request) -> str:
        return request.user.instance_id


class InfoApi(_ProxyApi):
    @extend_schema(summary="The caller's own inbox and number, if the pool provisioned them.", responses={200: _INFO})
    def get(self, request: Request) -> Response:
        rows = {r.tool_id: r for r in InstanceService.objects.using(DB).filter(
            instance_id=self.instance_id(request), tool_id__in=("email", "sms"), status=ResourceStatus.ACTIVE)}
        email, sms = rows.get("email"), rows.get("sms")
        return Response({"instanceId": self.instance_id(request),
                         "email": (email.config or {}).get("email") or email.resource_id if email else None,
                         "phone": sms.resource_id if sms else None})


class _EmailApi(_ProxyApi):
    def inbox(self, request: Request, named: str | None = None) -> str:
        inbox = _own(self.instance_id(request), "email").resource_id
        if named is not None and named != inbox:
            raise ServicesError("This inbox is not the caller's", status_code=403, code="not_own_inbox")
        return inbox

    def upstream(self, request: Request, method: str, inbox: str, suffix: str, **kwargs: Any) -> Response:
        url = f"{settings.AGENTMAIL_API_URL.rstrip('/')}/inboxes/{quote(inbox, safe='@.')}{suffix}"
        return _forward("AgentMail", method, url, api_key=settings.AGENTMAIL_API_KEY, caller=self.instance_id(request), **kwargs)

    def send(self, request: Request, named: str | None) -> Response:
        data = _body(request)
        named = named if named is not None else _optional_str(data, "inbox_id")
        inbox = self.inbox(request, named)
        message = _picked(data, EMAIL_FIELDS)
        if not message.get("to"):
            raise serializers.ValidationError({"to": "is required"})
        return self.upstream(request, "POST", inbox, "/messages/send", body=message)

    def listing(self, request: Request, named: str | None, what: str) -> Response:
        inbox = self.inbox(request, named if named is not None else request.query_params.get("inbox_id"))
        params = [(k, v) for k in EMAIL_QUERY for v in request.query_params.getlist(k)]
        return self.upstream(request, "GET", inbox, f"/{what}", params=params)


def _optional_str(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise serializers.ValidationError({field: "must be a string"})
    return value


class EmailSendApi(_EmailApi):
    @extend_schema(summary="Send an email from the caller's own inbox (AgentMail's answer comes back as is).",
                   request=_EMAIL_SEND)
    def post(self, request: Request, inbox_id: str | None = None) -> Response:
        return self.send(request, inbox_id)


class EmailMessagesApi(_EmailApi):
    def get(self, request: Request, inbox_id: str | None = None) -> Response:
        return self.listing(request, inbox_id, "messages")


class EmailThreadsApi(_EmailApi):
    def get(self, request: Request) -> Response:
        return self.listing(request, None, "threads")


class SmsSendApi(_ProxyApi):
    @extend_schema(summary="Send an SMS from the caller's own number (Telnyx's answer comes back as is).", request=_SMS_SEND)
    def post(self, request: Request) -> Response:
        data = _body(request)
        row = _own(self.instance_id(request), "sms")
        number = row.resource_id
        sender = _optional_str(data, "from")
        if sender is not None and sender != number:
            raise ServicesError("This `from` number is not the caller's", status_code=403, code="not_own_number")
        if not isinstance(data.get("to"), str) or not data["to"]:
            raise serializers.ValidationError({"to": "must be a phone number string"})
        message = {**_picked(data, SMS_FIELDS), "from": number}
        profile = (row.config or {}).get("messaging_profile_id") or settings.TELNYX_MESSAGING_PROFILE_ID
        if profile:
            message["messaging_profile_id"] = profile
        url = f"{settings.TELNYX_API_URL.rstrip('/')}/messages"
        return _forward("Telnyx", "POST", url, api_key=settings.TELNYX_API_KEY, caller=self.instance_id(request), body=message)


# Mounted at api/proxy/ by convos/urls.py.
urlpatterns = [
    path("info", InfoApi.as_view()),
    path("email/send", EmailSendApi.as_view()),
    path("email/messages", EmailMessagesApi.as_view()),
    path("email/threads", EmailThreadsApi.as_view()),
    path("email/inboxes/<resource:inbox_id>/messages/send", EmailSendApi.as_view()),
    path("email/inboxes/<resource:inbox_id>/messages", EmailMessagesApi.as_view()),
    path("sms/send", SmsSendApi.as_view()),
]
