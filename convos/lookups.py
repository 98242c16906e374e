"""`field__any=[...]`: membership in a list as ONE parameter on PostgreSQL (`= ANY(%s)`, an array).

`field__in=[5,000 ids]` makes a statement with 5,000 placeholders, which psycopg parses on every
call (it cannot cache queries that long: 20 ms per 1,000 ids here) and PostgreSQL plans as a long
list. The tick and the status batch ask about the whole fleet every time, so they use this. On
other databases it is the plain IN list. Registered for CharField (instance ids) by ConvosConfig.ready.
"""
from __future__ import annotations

from django.db.models import Lookup
from django.db.models.lookups import In


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        return "%s", [list(value)]

    def as_sql(self, compiler, connection):
        if connection.vendor != "postgresql":
            return In(self.lhs, list(self.rhs)).as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


def register() -> None:
    from django.db.models import CharField

    CharField.register_lookup(AnyOf)
