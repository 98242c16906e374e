from django.core.management import BaseCommand

from pool_app import selectors


class Command(BaseCommand):
    help = "Show instance counts per status and every live instance."

    def handle(self, *args, **options) -> None:
        status = selectors.pool_status()
        counts = ", ".join(f"{k}={v}" for k, v in status["counts"].items() if v)
        self.stdout.write(f"counts: {counts or 'no instances'}")
        for instance in status["instances"]:
            self.stdout.write(f"  {instance.id}  {instance.status:<18} {instance.deploy_status:<14} {instance.url}  {instance.agent_name}")
