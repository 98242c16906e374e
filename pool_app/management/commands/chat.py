from __future__ import annotations

import sys

from django.core.management import BaseCommand, CommandError

from convos.errors import DomainError
from pool_app.models import Actor
from pool_app.services.operations import instance_chat


class Command(BaseCommand):
    help = ("Talk to a claimed agent (loopback channel): each line you type is sent, the agent's answers are printed. "
            "With --message, send one message and exit. The pool relays through services; no token is shown.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("instance_id", metavar="INSTANCE_ID")
        parser.add_argument("--message", "-m", help="send this one message and print the answer")
        parser.add_argument("--name", default="operator", help="how you appear to the agent (default: operator)")

    def handle(self, *args, instance_id: str, message: str | None, name: str, **options) -> None:
        if message is not None:
            self._say(instance_id, message, name)
            return
        interactive = sys.stdin.isatty()
        if interactive:
            self.stdout.write(f"Talking to {instance_id}; an empty line or Ctrl-D ends.")
        for line in sys.stdin:
            text = line.strip()
            if not text:
                if interactive:
                    break
                continue
            self._say(instance_id, text, name)

    def _say(self, instance_id: str, text: str, name: str) -> None:
        try:
            replies = instance_chat(instance_id=instance_id, text=text, actor=Actor.CLI, sender_name=name)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if not replies:
            self.stdout.write(self.style.WARNING("(no answer)"))
        for reply in replies:
            self.stdout.write(f"agent> {reply}")
