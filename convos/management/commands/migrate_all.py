from django.conf import settings
from django.core.management import BaseCommand, call_command


class Command(BaseCommand):
    help = "Apply migrations on every database alias (default, pool, services, templates)."

    def handle(self, *args, **options) -> None:
        for alias in settings.DATABASES:
            self.stdout.write(f"Migrating {alias} ...")
            call_command("migrate", database=alias, interactive=False, verbosity=max(0, options["verbosity"] - 1))
        self.stdout.write(self.style.SUCCESS(f"Migrated {len(settings.DATABASES)} databases"))
