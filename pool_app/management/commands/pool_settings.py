from __future__ import annotations

import getpass
import os
from argparse import ArgumentTypeError

from django.core.management import BaseCommand, CommandError

from pool_app.config import OVERRIDABLE, pool_config, pool_settings_get, pool_settings_update


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise ArgumentTypeError(f"must be 0 or more: {number}")
    return number


def _field(value: str) -> str:
    name = value.replace("-", "_")
    if name not in OVERRIDABLE:
        raise ArgumentTypeError(f"not a pool setting: {value!r} (choose from {', '.join(OVERRIDABLE)})")
    return name


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): getuser raises OSError or KeyError
        return os.environ.get("USER") or "unknown"


class Command(BaseCommand):
    help = ("Show the pool's effective settings, or change the operator overrides (logged as changes "
            "by cli:<os user>; the tick applies them at its next run).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--min-idle", type=_non_negative, metavar="N")
        parser.add_argument("--max-total", type=_non_negative, metavar="N")
        parser.add_argument("--stuck-timeout-ms", type=_non_negative, metavar="N")
        parser.add_argument("--create-concurrency", type=_non_negative, metavar="N")
        pause = parser.add_mutually_exclusive_group()
        pause.add_argument("--pause", action="store_true", help="the tick observes but creates and destroys nothing")
        pause.add_argument("--resume", action="store_true")
        parser.add_argument("--clear", type=_field, nargs="+", default=[], metavar="FIELD",
                            help=f"drop overrides, back to the environment: {', '.join(OVERRIDABLE)}")

    def handle(self, *args, **options) -> None:
        values: dict[str, int | bool | None] = {f: options[f] for f in OVERRIDABLE if options.get(f) is not None}
        both = sorted(set(values) & set(options["clear"]))
        if both:
            raise CommandError(f"Both set and cleared: {', '.join(both)}")
        values.update({field: None for field in options["clear"]})
        if options["pause"] or options["resume"]:
            values["paused"] = bool(options["pause"])
        if values:
            try:
                changes = pool_settings_update(changed_by=f"cli:{_os_user()}", **values)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            for change in changes:
                self.stdout.write(self.style.SUCCESS(
                    f"{change.field}: {change.old_value or '-'} -> {change.new_value or '-'} (by {change.changed_by})"))
            if not changes:
                self.stdout.write("No change")
        self._show()

    def _show(self) -> None:
        row = pool_settings_get()
        config = pool_config()
        effective = {
            "min_idle": config.min_idle,
            "max_total": config.max_total,
            "stuck_timeout_ms": int(config.stuck_timeout.total_seconds() * 1000),
            "create_concurrency": config.create_concurrency,
        }
        for field, setting in OVERRIDABLE.items():
            override = getattr(row, field)
            source = "override" if override is not None else f"{setting} from the environment"
            self.stdout.write(f"{field:<20} {effective[field]:<10} ({source})")
        self.stdout.write(f"{'paused':<20} {'yes' if config.paused else 'no'}")
