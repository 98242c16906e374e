"""Assertions on the requests a plugin sent (method, URL, auth header, JSON body)."""
from __future__ import annotations

import json
from typing import Any


def assert_call(call: Any, method: str, url: str, *, key: str, body: Any = None) -> None:
    assert call.request.method == method
    assert call.request.url == url
    assert call.request.headers["Authorization"] == f"Bearer {key}"
    if body is not None:
        assert json.loads(call.request.body) == body
