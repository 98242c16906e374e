"""The environment a bench (or the soak) starts Django in, and the PostgreSQL databases it runs on.

Every bench that runs on PostgreSQL names its own four databases (`<prefix>_default`, `_pool`,
`_services`, `_templates` at 127.0.0.1:5432) so that benches never read each other's rows, and
empties them after migrating (`flush_all`) so that an earlier run's rows never skew the numbers.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
ALIASES = {"default": "DATABASE_URL", "pool": "POOL_DATABASE_URL", "services": "SERVICES_DATABASE_URL", "templates": "TEMPLATES_DATABASE_URL"}


def isolated_environment(*, var_prefix: str, provider: str, log_level: str = "WARNING",
                         unset: tuple[str, ...] = ()) -> Path:
    """What every bench sets before django.setup(): a fresh VAR_DIR (its files, its generated
    secrets), no .env, the given infra provider, and services in process with no broker (REDIS_URL,
    CELERY_BROKER_URL, SERVICES_URL unset, plus `unset`). Returns the VAR_DIR."""
    var_dir = Path(tempfile.mkdtemp(prefix=var_prefix))
    os.environ.update({"VAR_DIR": str(var_dir), "ENV_FILE": "/dev/null", "INFRA_PROVIDER": provider, "LOG_LEVEL": log_level})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convos.settings")
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "SERVICES_URL", *unset):
        os.environ.pop(name, None)
    return var_dir


def use_postgres(prefix: str) -> None:
    """Create `<prefix>_<alias>` for each alias if missing and point the environment at them
    (before django.setup())."""
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        for alias in ALIASES:
            name = f"{prefix}_{alias}"
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    for alias, variable in ALIASES.items():
        os.environ[variable] = f"{PG_SERVER}/{prefix}_{alias}"


def use_embedded_sqlite() -> None:
    """The embedded SQLite defaults (files under VAR_DIR), whatever the environment named."""
    for variable in ALIASES.values():
        os.environ.pop(variable, None)


def flush_all() -> None:
    """Migrate every alias and empty it: a clean slate (after django.setup())."""
    import io

    from django.core.management import call_command

    call_command("migrate_all", verbosity=0, stdout=io.StringIO())
    for alias in ALIASES:
        call_command("flush", database=alias, interactive=False, verbosity=0)


def vacuum_analyze() -> None:
    """What autovacuum does on a production server (ANALYZE on SQLite), now: a bench that filled or
    churned thousands of rows measures the steady state, not a planner working from statistics
    taken when the tables were empty and indexes full of dead rows. (This machine's PostgreSQL
    runs with autovacuum off, so without this nothing would ever do it.)"""
    from django.db import connections

    for alias in ALIASES:
        with connections[alias].cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if connections[alias].vendor == "postgresql" else "ANALYZE")
