from django.apps import AppConfig


class ConvosConfig(AppConfig):
    """Project-wide management commands (migrate_all, bootstrap) live in this app; it has no models."""

    name = "convos"
    verbose_name = "Convos"

    def ready(self) -> None:
        from convos.lookups import register

        register()
