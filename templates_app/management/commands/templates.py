"""Operator CLI for templates: list them, change visibility, delete one. Thin: the same selectors
and services as the API, as the operator."""
from __future__ import annotations

from django.core.management import BaseCommand, CommandError

from convos.auth import OPERATOR
from convos.errors import DomainError
from pool_app.selectors import instance_counts_by_template
from templates_app.models import Visibility
from templates_app.selectors import template_get, template_list
from templates_app.services import template_delete, template_set_visibility


class Command(BaseCommand):
    help = "List templates, set a template's visibility, or delete one (instances claimed from it are untouched)."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="every template, newest first, with its live instance count")
        listing.add_argument("--visibility", choices=Visibility.values)
        listing.add_argument("--creator", help="only this creator's templates")
        visibility = actions.add_parser("visibility", help="make a template public or private")
        visibility.add_argument("template_id")
        visibility.add_argument("visibility", choices=Visibility.values)
        delete = actions.add_parser("delete", help="delete a template")
        delete.add_argument("template_id")
        delete.add_argument("--dry-run", action="store_true", help="say what would be deleted, change nothing")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except DomainError as exc:
            raise CommandError(exc.message) from exc

    def _list(self, *, visibility: str | None, creator: str | None, **options) -> None:
        templates = template_list(viewer=OPERATOR, visibility=visibility, creator_id=creator)
        counts = instance_counts_by_template([t.pk for t in templates]) if templates else {}
        for t in templates:
            tools = ",".join(f"{tool['id']}:{tool['provisioning']}" for tool in t.tools) or "-"
            self.stdout.write(f"{t.pk}\t{t.visibility}\t{t.creator_id or '-'}\t{counts.get(t.pk, 0)} instance(s)\t{tools}\t{t.agent_name}")
        self.stdout.write(self.style.SUCCESS(f"{len(templates)} template(s)"))

    def _visibility(self, *, template_id: str, visibility: str, **options) -> None:
        template = template_set_visibility(template_id=template_id, viewer=OPERATOR, visibility=visibility)
        self.stdout.write(self.style.SUCCESS(f"Template {template.pk} is now {template.visibility}"))

    def _delete(self, *, template_id: str, dry_run: bool, **options) -> None:
        if dry_run:
            template = template_get(template_id=template_id, viewer=OPERATOR)
            self.stdout.write(f"Dry run, nothing changed: would delete template {template.pk} ({template.agent_name})")
            return
        template_delete(template_id=template_id, viewer=OPERATOR)
        self.stdout.write(self.style.SUCCESS(f"Deleted template {template_id}"))
