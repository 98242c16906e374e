import json

from django.core.management import BaseCommand

from pool_app.services import pool_tick


class Command(BaseCommand):
    help = "Run one pool tick now (the same function beat schedules)."

    def handle(self, *args, **options) -> None:
        report = pool_tick()
        self.stdout.write(json.dumps(report, indent=2))
        if report["errors"]:
            self.stderr.write(self.style.WARNING(f"{len(report['errors'])} step(s) failed"))
        else:
            self.stdout.write(self.style.SUCCESS("Tick done"))
