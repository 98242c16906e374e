from django.core.management import BaseCommand

from pool_app.management.commands._operations import run_operation
from pool_app.models import Actor
from pool_app.services.operations import instance_destroy_one


class Command(BaseCommand):
    help = "Destroy one instance, claimed or not; protected ones are refused (the same function as DELETE /api/pool/instances/ID)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("instance_id", metavar="ID")
        parser.add_argument("--dry-run", action="store_true", help="check it could be destroyed, change nothing")

    def handle(self, *args, instance_id: str, dry_run: bool, **options) -> None:
        run_operation(self, lambda: instance_destroy_one(instance_id=instance_id, dry_run=dry_run, actor=Actor.CLI))
