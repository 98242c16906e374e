"""The fleet dashboard (the admin's front page) at fleet scale: 5,000 instances, 1,000,000 events
and a week of ticks (20,160), on PostgreSQL (convos_bench_* databases). Prints numbers, asserts
nothing.

Measures the dashboard's data (`fleet_dashboard()`, with its SQL statements counted) and the whole
page as a browser gets it (`GET /admin/` through Django's test client, logged in), median of 5.

Run: `.venv/bin/python -m bench.dashboard` (also part of `make bench`).
"""
from __future__ import annotations

import io
import os
import platform
import statistics
import time

INSTANCES = 5_000
EVENTS = 1_000_000
TICKS = 7 * 24 * 120  # a week at the default 30 s interval
RUNS = 5


def main() -> None:
    os.environ["BENCH_DATABASE"] = "postgres"
    from bench.tick import ALIASES, _prepare_environment

    _prepare_environment()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from pool_app.dashboard import fleet_dashboard

    call_command("migrate_all", verbosity=0, stdout=io.StringIO())
    for alias in ALIASES:
        call_command("flush", database=alias, interactive=False, verbosity=0)
    started = time.perf_counter()
    with connections["pool"].cursor() as cursor:
        # Generated in the database: a million rows in seconds, spread over the last 30 days.
        cursor.execute(
            "INSERT INTO instances (id, status, url, deploy_status, agent_name, instructions, model, join_url, conversation_id,"
            " invite_url, template_id, runtime_kind, source, profile_image, metadata, owner_id, protected, needs_reset,"
            " reset_failures, last_error, created_at, updated_at, status_changed_at)"
            " SELECT 'bench' || lpad(g::text, 7, '0'), (ARRAY['idle','claimed','starting','crashed'])[1 + g %% 4], '', 'healthy',"
            " '', '', '', '', '', '', '', 'convos-python', '', '', '{}', '', false, false, 0, '', now(), now(), now()"
            " FROM generate_series(1, %s) g", [INSTANCES])
        cursor.execute(
            "INSERT INTO instance_events (instance_id, from_status, to_status, reason, actor, created_at)"
            " SELECT 'bench' || lpad((1 + g %% %s)::text, 7, '0'), (ARRAY['starting','claiming','idle'])[1 + g %% 3],"
            " (ARRAY['idle','claimed','crashed'])[1 + g %% 3], 'bench', 'tick', now() - (g * interval '2.6 seconds')"
            " FROM generate_series(1, %s) g", [INSTANCES, EVENTS])
        cursor.execute(
            "INSERT INTO tick_records (at, duration_ms, idle, skipped, outage, errors, steps)"
            " SELECT now() - (g * interval '30 seconds'), 400 + g %% 300, 1250, false, '', '{}', '{\"observe\": {\"checked\": 5000}}'"
            " FROM generate_series(1, %s) g", [TICKS])
        cursor.execute("ANALYZE instances; ANALYZE instance_events; ANALYZE tick_records")
    print(f"dashboard benchmark: PostgreSQL (convos_bench_*), python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"  data: {INSTANCES:,} instances, {EVENTS:,} events, {TICKS:,} ticks (made in {time.perf_counter() - started:.1f} s)")

    data_ms, queries = [], 0
    for _ in range(RUNS):
        with CaptureQueriesContext(connections["pool"]) as captured:
            t0 = time.perf_counter()
            fleet_dashboard()
            data_ms.append((time.perf_counter() - t0) * 1000)
        queries = len(captured)
    print(f"  fleet_dashboard(): median {statistics.median(data_ms):.1f} ms, worst {max(data_ms):.1f} ms, {queries} statements on the pool database")

    get_user_model().objects.create_superuser("bench", "bench@example.test", "bench-password-only")
    client = Client()
    client.login(username="bench", password="bench-password-only")
    page_ms = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        response = client.get("/admin/")
        page_ms.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200 and b"fleet-dashboard" in response.content
    print(f"  GET /admin/ (whole page, logged in): median {statistics.median(page_ms):.1f} ms, worst {max(page_ms):.1f} ms")


if __name__ == "__main__":
    main()
