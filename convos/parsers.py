"""The API's JSON parser: DRF's, with nesting bounded.

Python's json module recurses once per nesting level: a body of 100,000 `[` raises RecursionError,
which DRF's parser does not catch (a 500), and even a body that parses can blow the stack of
whatever walks it next (serializers, the idempotency fingerprint). No request of this API nests
deeper than a few levels, so anything past MAX_DEPTH is refused with a 400.
"""
from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


def nesting_depth(value: Any) -> int:
    """Depth of nested lists and dicts, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep") from None
        if nesting_depth(data) > MAX_DEPTH:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep")
        return data


def json_object_body(request: Any, *, optional: bool = False) -> dict:
    """The request's JSON body, which must be an object: one rule for every API module (400 naming
    `body` otherwise). An optional body may be absent; it may not be a list or a string."""
    data = request.data
    if optional and not data:
        return {}
    if not isinstance(data, dict):
        raise serializers.ValidationError({"body": "Must be a JSON object"})
    return data
