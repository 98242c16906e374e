"""Route each app to its own database alias.

The pool, services and templates bounded contexts each own a database (seed 002: "separate Postgres
instances, no shared tables, no cross-DB foreign keys"). Django's own apps stay on `default`.
Routing is by app label only, so a model can never drift onto another alias by accident.
"""
from __future__ import annotations

from typing import Any

APP_DATABASES: dict[str, str] = {
    "pool_app": "pool",
    "services_app": "services",
    "templates_app": "templates",
}
DEFAULT_ALIAS = "default"


def alias_for_app(app_label: str) -> str:
    return APP_DATABASES.get(app_label, DEFAULT_ALIAS)


class AppDatabaseRouter:
    def db_for_read(self, model: type, **hints: Any) -> str:
        return alias_for_app(model._meta.app_label)

    def db_for_write(self, model: type, **hints: Any) -> str:
        return alias_for_app(model._meta.app_label)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        # A relation is only possible inside one database; cross-database links are plain ids.
        return alias_for_app(obj1._meta.app_label) == alias_for_app(obj2._meta.app_label)

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return alias_for_app(app_label) == db
