from django.core.management import BaseCommand, CommandError

from convos.errors import DomainError
from pool_app.models import Actor
from pool_app.services.operations import instance_recheck


class Command(BaseCommand):
    help = "Ask services about one instance now and apply the answer as the tick would (POST /api/pool/instances/ID/recheck)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("instance_id", metavar="ID")

    def handle(self, *args, instance_id: str, **options) -> None:
        try:
            instance = instance_recheck(instance_id=instance_id, actor=Actor.CLI)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        line = f"{instance.pk}: {instance.status} (deploy {instance.deploy_status or 'unknown'})"
        if instance.last_error:
            line += f", last error: {instance.last_error}"
        self.stdout.write(self.style.SUCCESS(line))
