from django.core.management import BaseCommand, CommandError

from pool_app.services.api_clients import api_client_create


class Command(BaseCommand):
    help = "Create an API client and print its key once (only its hash is kept)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", required=True, help="owner id recorded on its claims and templates")
        parser.add_argument("--rate-limit", type=int, default=None, help="requests per minute (default: none)")

    def handle(self, *args, name: str, owner: str, rate_limit: int | None, **options) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be at least 1")
        try:
            created = api_client_create(name=name, owner_id=owner, rate_limit_per_minute=rate_limit)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created API client {created.client.pk} ({name}, owner {owner})."))
        self.stdout.write(f"Key (shown only now, store it safely): {created.key}")
