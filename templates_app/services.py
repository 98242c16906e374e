"""Template writes, all on the `templates` alias.

Callers pass values already checked by `templates_app.validation` (the API's InputSerializer, the
admin form), keyed by model field name. Only the creator or the operator changes a template:
another client's private template is a 404 (its existence is not revealed), another client's
public template is a 403 (it can be read, so "not found" would be a lie).

Deleting a template never touches instances: claimed instances keep the values they were claimed
with, and their `template_id` simply points at nothing any more (seed 002).
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from convos.errors import DomainError
from templates_app.models import AgentTemplate, Visibility
from templates_app.selectors import template_id_possible, template_not_found, template_queryset

logger = logging.getLogger(__name__)
from templates_app.db import DB
EDITABLE_FIELDS = ("agent_name", "instructions", "model", "tools", "visibility")


def _values(data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not template fields: {', '.join(sorted(unknown))}")
    return dict(data)


def _editable(*, template_id: str, viewer: Any) -> AgentTemplate:
    """The template locked for the rest of the caller's transaction, if `viewer` may change it."""
    # The row lock makes check-then-write one step: a concurrent delete or visibility change
    # cannot slip between the permission check and the write.
    template = None
    if template_id_possible(template_id):
        template = template_queryset(viewer=viewer).select_for_update().filter(pk=template_id).first()
    if template is None:
        raise template_not_found(template_id)
    if not (viewer.is_operator or (viewer.owner_id and template.creator_id == viewer.owner_id)):
        raise DomainError("Only the template's creator can change it", code="forbidden", status_code=403)
    return template


def template_create(*, viewer: Any, data: dict[str, Any], creator_id: str | None = None) -> AgentTemplate:
    """Create a template owned by `viewer`. Only the operator (admin) may name another creator."""
    if creator_id is not None and creator_id != viewer.owner_id and not viewer.is_operator:
        raise DomainError("Only the operator can create a template for another creator", code="forbidden", status_code=403)
    values = _values(data)
    with transaction.atomic(using=DB):
        template = AgentTemplate(creator_id=creator_id or viewer.owner_id or "", **values)
        template.save(using=DB, force_insert=True)
    logger.info("template %s created by %s", template.pk, viewer.name)
    return template


def template_update(*, template_id: str, viewer: Any, data: dict[str, Any]) -> AgentTemplate:
    """Change the given fields (PATCH: some, PUT: all) and nothing else."""
    values = _values(data)
    with transaction.atomic(using=DB):
        template = _editable(template_id=template_id, viewer=viewer)
        changed = [name for name, value in values.items() if getattr(template, name) != value]
        if not changed:
            return template
        for name in changed:
            setattr(template, name, values[name])
        # Only the changed columns: a concurrent PATCH of another field (it waits on the lock) stands.
        template.save(using=DB, update_fields=[*changed, "updated_at"])
    logger.info("template %s updated by %s: %s", template.pk, viewer.name, ", ".join(changed))
    return template


def template_set_visibility(*, template_id: str, viewer: Any, visibility: str) -> AgentTemplate:
    if visibility not in Visibility.values:
        raise DomainError(f"visibility: must be one of {', '.join(Visibility.values)}", code="invalid")
    return template_update(template_id=template_id, viewer=viewer, data={"visibility": visibility})


def template_delete(*, template_id: str, viewer: Any) -> None:
    """Delete the template. Instances claimed from it keep running, untouched."""
    with transaction.atomic(using=DB):
        template = _editable(template_id=template_id, viewer=viewer)
        template.delete(using=DB)
    logger.info("template %s deleted by %s", template_id, viewer.name)

