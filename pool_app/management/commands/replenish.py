from django.core.management import BaseCommand

from pool_app.management.commands._operations import count_argument, run_operation
from pool_app.models import Actor
from pool_app.services.operations import pool_replenish


class Command(BaseCommand):
    help = "Create N instances now, within POOL_MAX_TOTAL (the same function as POST /api/pool/replenish)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=count_argument, required=True, metavar="N", help="instances to create (1-1000)")

    def handle(self, *args, count: int, **options) -> None:
        run_operation(self, lambda: pool_replenish(count=count, actor=Actor.CLI))
