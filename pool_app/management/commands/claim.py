import json

from django.core.management import BaseCommand, CommandError

from convos.errors import DomainError
from pool_app.models import Actor
from pool_app.services import instance_claim
from pool_app.services.claim import claim_spec


class Command(BaseCommand):
    help = "Claim an idle instance (the same function as POST /api/pool/claim)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True, help="agent name")
        parser.add_argument("--instructions", default="", help="agent instructions")
        parser.add_argument("--join-url", default=None, help="Convos invite URL to join instead of creating a conversation")

    def handle(self, *args, name: str, instructions: str, join_url: str | None, **options) -> None:
        try:
            result = instance_claim(spec=claim_spec(agent_name=name, instructions=instructions, join_url=join_url), actor=Actor.CLI)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(result.as_dict(), indent=2))
