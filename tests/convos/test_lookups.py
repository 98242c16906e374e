"""`field__any=[ids]`: one array parameter on PostgreSQL, the plain IN list elsewhere."""
from __future__ import annotations

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from pool_app.models import Instance
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def test_it_finds_exactly_the_rows_listed():
    rows = [Instance.objects.create() for _ in range(4)]
    wanted = [rows[0].pk, rows[2].pk, "not-an-instance"]
    assert set(Instance.objects.filter(pk__any=wanted).values_list("pk", flat=True)) == {rows[0].pk, rows[2].pk}
    assert not Instance.objects.filter(pk__any=[]).exists()


def test_it_sends_thousands_of_ids_as_one_parameter_on_postgresql(postgres_only):
    ids = [f"id{i}" for i in range(3000)]
    with CaptureQueriesContext(connections["pool"]) as queries:
        assert Instance.objects.filter(pk__any=ids).count() == 0
    (query,) = queries.captured_queries
    assert "= ANY(" in query["sql"] and query["sql"].count("%s") <= 1 and "id2999" in query["sql"]
