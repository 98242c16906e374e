from django.core.management import BaseCommand
from django.conf import settings

from services_app import services
from services_app.providers.local import list_runtime_processes, stop_strays


class Command(BaseCommand):
    help = "Stop or start every local instance (INFRA_PROVIDER=local); `status` lists their processes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["stop", "start", "status"])

    def handle(self, *args, action: str, **options) -> None:
        if action == "stop":
            stopped = services.local_fleet_stop()
            stop_strays(settings.LOCAL_INSTANCES_DIR)
            left = list_runtime_processes(settings.LOCAL_INSTANCES_DIR)
            self.stdout.write(self.style.SUCCESS(f"Stopped {len(stopped)} local instance(s); {len(left)} runtime process(es) left"))
        elif action == "start":
            started = services.local_fleet_start()
            self.stdout.write(self.style.SUCCESS(f"Started {len(started)} local instance(s)"))
        else:
            pids = list_runtime_processes(settings.LOCAL_INSTANCES_DIR)
            self.stdout.write(f"{len(pids)} runtime process(es): {' '.join(map(str, pids))}")
