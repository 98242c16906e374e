"""Every web request gets an id: the caller's `X-Request-ID` when it is sane, else a new one.

It is kept in a context variable for the request's duration (so every log line of the request
carries it, see convos/log_format.py) and echoed in the answer's `X-Request-ID` header, so a
client's report can be matched with the pool's logs.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from convos.log_format import request_id_var

HEADER = "X-Request-ID"
# What a proxy or client may reasonably send (UUIDs, hex, Heroku/Railway ids); anything else is
# replaced, so a log line never carries a caller's arbitrary text (or a newline) as an id.
_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(request: HttpRequest) -> str:
    given = request.headers.get(HEADER, "").strip()
    return given if _SANE.fullmatch(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response
