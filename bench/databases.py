"""The PostgreSQL databases a bench (or the soak) runs on: one per alias, created if missing.

Every bench that runs on PostgreSQL names its own four databases (`<prefix>_default`, `_pool`,
`_services`, `_templates` at 127.0.0.1:5432) so that benches never read each other's rows, and
empties them after migrating (`flush_all`) so that an earlier run's rows never skew the numbers.
"""
from __future__ import annotations

import os

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
ALIASES = {"default": "DATABASE_URL", "pool": "POOL_DATABASE_URL", "services": "SERVICES_DATABASE_URL", "templates": "TEMPLATES_DATABASE_URL"}


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
