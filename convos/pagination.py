"""Limit/offset pages for the API's lists: one rule for every list endpoint.

`?limit=` (1..MAX_LIMIT, default DEFAULT_LIMIT) and `?offset=` (>= 0); anything else is a 400
naming the parameter. A queryset is counted and sliced in the database, never loaded whole.
"""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_OFFSET = 10**9


class PageParams(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, required=False, default=DEFAULT_LIMIT)
    # Bounded: PostgreSQL's OFFSET is a bigint, a larger one was a 500 (found by the schema fuzz).
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, required=False, default=0)


def page(query_params: Any, items: Any, *, key: str, serialize) -> dict[str, Any]:
    """`{key: [...], "count", "limit", "offset"}` for one page of `items` (a queryset or a list)."""
    params = PageParams(data={name: query_params[name] for name in ("limit", "offset") if name in query_params})
    params.is_valid(raise_exception=True)
    limit, offset = params.validated_data["limit"], params.validated_data["offset"]
    count = len(items) if isinstance(items, list) else items.count()
    return {key: serialize(items[offset:offset + limit]), "count": count, "limit": limit, "offset": offset}
