"""Shared by the operator commands (the leading underscore keeps it out of `manage.py help`)."""
from __future__ import annotations

import json
from argparse import ArgumentTypeError
from collections.abc import Callable

from django.core.management import BaseCommand, CommandError

from convos.errors import DomainError
from pool_app.services.operations import OperationResult

MAX_COUNT = 1000  # the CLI is not bound by a web request's time: larger batches than the API's


def count_argument(value: str) -> int:
    """argparse type of --count: 1 to MAX_COUNT."""
    try:
        number = int(value)
    except ValueError:
        raise ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= number <= MAX_COUNT:
        raise ArgumentTypeError(f"must be 1 to {MAX_COUNT}: {number}")
    return number


def run_operation(command: BaseCommand, operation: Callable[[], OperationResult]) -> OperationResult:
    """Call one service, print its result as JSON and a summary line; any failure exits non-zero."""
    try:
        result = operation()
    except DomainError as exc:
        raise CommandError(exc.message) from exc
    command.stdout.write(json.dumps(result.as_dict(), indent=2))
    ids = ", ".join(result.instance_ids) or "none"
    if result.note:
        command.stderr.write(command.style.WARNING(f"{result.action}: {result.note}"))
    if result.failed:
        failures = "; ".join(f"{pk}: {error}" for pk, error in result.failed.items())
        raise CommandError(f"{result.action} failed for {len(result.failed)} instance(s): {failures}")
    if result.dry_run:
        command.stdout.write(command.style.SUCCESS(
            f"Dry run, nothing changed: {result.action} would affect {len(result.instance_ids)} instance(s): {ids}"))
    else:
        command.stdout.write(command.style.SUCCESS(f"{result.action}: {len(result.instance_ids)} instance(s): {ids}"))
    return result
