from django.core.management import BaseCommand

from pool_app.management.commands._operations import count_argument, run_operation
from pool_app.models import Actor
from pool_app.services.operations import pool_drain


class Command(BaseCommand):
    help = "Destroy up to N idle instances, oldest first, never protected ones (the same function as POST /api/pool/drain)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=count_argument, required=True, metavar="N", help="idle instances to drain (1-1000)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be drained, change nothing")

    def handle(self, *args, count: int, dry_run: bool, **options) -> None:
        run_operation(self, lambda: pool_drain(count=count, dry_run=dry_run, actor=Actor.CLI))
