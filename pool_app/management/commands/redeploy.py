from django.core.management import BaseCommand, CommandError

from pool_app.management.commands._operations import run_operation
from pool_app.models import Actor
from pool_app.services.operations import instance_redeploy_one, pool_redeploy_idle


class Command(BaseCommand):
    help = ("Redeploy one instance (POST /api/pool/instances/ID/redeploy) or every idle one "
            "(POST /api/pool/redeploy); an idle instance goes back to starting until it is healthy again.")

    def add_arguments(self, parser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--instance", metavar="ID", help="the instance to redeploy")
        target.add_argument("--all-idle", action="store_true", help="every idle instance")
        parser.add_argument("--dry-run", action="store_true", help="with --all-idle: list what would be redeployed, change nothing")

    def handle(self, *args, instance: str | None, all_idle: bool, dry_run: bool, **options) -> None:
        if all_idle:
            run_operation(self, lambda: pool_redeploy_idle(dry_run=dry_run, actor=Actor.CLI))
            return
        if dry_run:
            raise CommandError("--dry-run goes with --all-idle")
        run_operation(self, lambda: instance_redeploy_one(instance_id=instance, actor=Actor.CLI))
