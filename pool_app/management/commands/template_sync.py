import json

from django.core.management import BaseCommand, CommandError

from convos.errors import DomainError
from pool_app.models import Actor
from pool_app.services.templates import template_sync


class Command(BaseCommand):
    help = "Push a template's name and instructions to every instance claimed from it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("template_id")

    def handle(self, *args, template_id: str, **options) -> None:
        try:
            result = template_sync(template_id=template_id, actor=Actor.CLI)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(result, indent=2))
        if result["failed"]:
            raise CommandError(f"{len(result['failed'])} instance(s) failed to sync: {', '.join(result['failed'])}")
        self.stdout.write(self.style.SUCCESS(f"Synced {len(result['synced'])} instance(s)"))
