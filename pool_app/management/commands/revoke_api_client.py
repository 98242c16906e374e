from django.core.management import BaseCommand, CommandError

from convos.errors import DomainError
from pool_app.services.api_clients import api_client_revoke


class Command(BaseCommand):
    help = "Revoke an API client's key at once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("client_id", type=int)

    def handle(self, *args, client_id: int, **options) -> None:
        try:
            client = api_client_revoke(client_id=client_id)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Revoked API client {client.pk} ({client.name})"))
