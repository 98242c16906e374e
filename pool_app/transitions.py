"""Status changes of instances: conditional, race-free, and always written to the event log."""
from __future__ import annotations

import logging
from typing import Any

from django.db import connections, transaction
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from convos.redaction import redact
from pool_app.models import Instance, InstanceEvent

logger = logging.getLogger(__name__)
from pool_app.db import DB


def _event(*, instance_id: str, from_status: str, to_status: str, reason: str, actor: str) -> InstanceEvent:
    return InstanceEvent(instance_id=instance_id, from_status=from_status, to_status=to_status, reason=redact(reason)[:2000], actor=actor)


def record_event(*, instance_id: str, from_status: str, to_status: str, reason: str, actor: str) -> None:
    _event(instance_id=instance_id, from_status=from_status, to_status=to_status, reason=reason, actor=actor).save(using=DB)


def record_events(*, instance_ids: list[str], from_status: str, to_status: str, reason: str, actor: str) -> None:
    """The same event for many instances in one insert (e.g. a batch of creations)."""
    InstanceEvent.objects.using(DB).bulk_create(
        _event(instance_id=i, from_status=from_status, to_status=to_status, reason=reason, actor=actor) for i in instance_ids
    )


def with_events_sql(update_sql: str, params: list[Any], *, from_status: str, to_status: str, reason: str, actor: str,
                    select: str = "id", select_params: list[Any] | tuple = ()) -> tuple[str, list[Any]]:
    """PostgreSQL: an UPDATE of instances (without RETURNING) and the event of exactly each row it
    moved, as ONE statement (a data-modifying CTE), selecting `select` (with `select_params`) from
    the moved rows.

    One statement is atomic on its own: no BEGIN/COMMIT round trips, and no window in which a
    move is visible without its event. A row the UPDATE's condition skips gets no event."""
    sql = (f"WITH moved AS ({update_sql} RETURNING *), "
           f"events AS (INSERT INTO {InstanceEvent._meta.db_table} (instance_id, from_status, to_status, reason, actor, created_at) "
           f"SELECT id, %s, %s, %s, %s, %s FROM moved) "
           f"SELECT {select} FROM moved")
    return sql, [*params, from_status, to_status, redact(reason)[:2000], actor, timezone.now(), *select_params]


def _plain_update_sql(instance_id: str, from_status: str, values: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """`UPDATE instances SET ... WHERE id = %s AND status = %s` for plain values, written here
    rather than compiled by Django's UpdateQuery: compiling was half of the claim's final write
    (~0.3 ms of CPU per claim, and the tick moves instances one by one too). Each value goes
    through its field's own conversion (`get_db_prep_save`, as Django's compiler does), so a date
    or a JSON value is stored exactly as by `.update()`. None when a value is an expression or a
    field needs its own placeholder: then Django compiles the update."""
    connection = connections[DB]
    quote = connection.ops.quote_name
    sets, params = [], []
    for name, value in values.items():
        field = Instance._meta.get_field(name)
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save") or hasattr(field, "get_placeholder"):
            return None
        value = field.get_db_prep_save(value, connection=connection)
        if hasattr(value, "as_sql"):
            return None
        if value is None:
            sets.append(f"{quote(field.column)} = NULL")
        else:
            sets.append(f"{quote(field.column)} = %s")
            params.append(value)
    status_column = Instance._meta.get_field("status").column
    sql = (f"UPDATE {quote(Instance._meta.db_table)} SET {', '.join(sets)} "
           f"WHERE {quote(Instance._meta.pk.column)} = %s AND {quote(status_column)} = %s")
    return sql, [*params, instance_id, from_status]


def transition(instance_id: str, *, from_status: str, to_status: str, actor: str, reason: str,
               expect: dict[str, Any] | None = None, **fields: Any) -> bool:
    """Move the instance from `from_status` to `to_status` if it is still in `from_status` (and its
    fields still have the `expect`ed values).

    A conditional UPDATE instead of a lock: two processes racing on one instance cannot both win,
    and the loser learns it from the return value. The event is written with it, atomically: on
    PostgreSQL in the same statement (`with_events_sql`), elsewhere in the same transaction.
    """
    now = timezone.now()
    values = dict(fields, status=to_status, updated_at=now)
    moves = to_status != from_status
    if moves:
        values["status_changed_at"] = now
    def conditional():
        return Instance.objects.using(DB).filter(pk=instance_id, status=from_status, **(expect or {}))

    if moves and connections[DB].vendor == "postgresql":
        plain = None if expect else _plain_update_sql(instance_id, from_status, values)
        if plain is None:
            query = conditional().query.chain(UpdateQuery)
            query.add_update_values(values)
            update_sql, params = query.get_compiler(DB).as_sql()
        else:
            update_sql, params = plain
        sql, params = with_events_sql(update_sql, list(params), from_status=from_status, to_status=to_status, reason=reason, actor=actor)
        with connections[DB].cursor() as cursor:
            cursor.execute(sql, params)
            changed = len(cursor.fetchall())
    else:
        with transaction.atomic(using=DB):
            changed = conditional().update(**values)
            if changed and moves:
                record_event(instance_id=instance_id, from_status=from_status, to_status=to_status, reason=reason, actor=actor)
    if changed and moves:
        log_transition(instance_id, from_status=from_status, to_status=to_status, actor=actor, reason=reason)
    return bool(changed)


# Ids per statement in `transition_many`: keeps each UPDATE's parameter list (SQLite allows 32,766
# variables; PostgreSQL 65,535) and each transaction's lock set small while a wave of thousands
# still takes a handful of statements.
BULK_CHUNK = 500


def transition_many(instance_ids: list[str], *, from_status: str, to_status: str, actor: str, reason: str) -> list[str]:
    """`transition` for many instances with the same move and reason, in bounded statements.

    Per chunk of BULK_CHUNK ids, one conditional `UPDATE ... WHERE id IN (...) AND status = from`
    and the events of exactly the rows it moved: one statement on PostgreSQL (`with_events_sql`),
    an UPDATE ... RETURNING and an insert in one transaction on SQLite. Rows
    another process moved first (a claim) are not in RETURNING: no lost update, and no event for
    a move that did not happen. Returns the ids moved. Both PostgreSQL and SQLite (>= 3.35) speak
    RETURNING.
    """
    if from_status == to_status:
        raise ValueError("transition_many moves instances between two different statuses")
    moved: list[str] = []
    table = Instance._meta.db_table
    for start in range(0, len(instance_ids), BULK_CHUNK):
        chunk = instance_ids[start:start + BULK_CHUNK]
        now = timezone.now()
        placeholders = ", ".join(["%s"] * len(chunk))
        sql = (f"UPDATE {table} SET status = %s, updated_at = %s, status_changed_at = %s "
               f"WHERE id IN ({placeholders}) AND status = %s")
        params = [to_status, now, now, *chunk, from_status]
        if connections[DB].vendor == "postgresql":
            sql, params = with_events_sql(sql, params, from_status=from_status, to_status=to_status, reason=reason, actor=actor)
            with connections[DB].cursor() as cursor:
                cursor.execute(sql, params)
                done = [row[0] for row in cursor.fetchall()]
        else:
            with transaction.atomic(using=DB), connections[DB].cursor() as cursor:
                cursor.execute(sql + " RETURNING id", params)
                done = [row[0] for row in cursor.fetchall()]
                record_events(instance_ids=done, from_status=from_status, to_status=to_status, reason=reason, actor=actor)
        moved += done
    for instance_id in moved:
        log_transition(instance_id, from_status=from_status, to_status=to_status, actor=actor, reason=reason)
    return moved


def log_transition(instance_id: str, *, from_status: str, to_status: str, actor: str, reason: str) -> None:
    logger.info("instance %s: %s -> %s (%s, %s)", instance_id, from_status, to_status, actor, redact(reason),
                extra={"instance_id": instance_id})
