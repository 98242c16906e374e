"""Template reads. Who sees what lives here, once: everyone sees public templates, a client sees
its own private ones, the operator sees everything. Another client's private template does not
exist as far as the caller can tell (404, never 403)."""
from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from convos.errors import NotFound
from templates_app.models import AgentTemplate, Visibility

from templates_app.db import DB
MAX_ID = AgentTemplate._meta.get_field("id").max_length


def template_queryset(*, viewer: Any) -> QuerySet[AgentTemplate]:
    """The templates `viewer` (an `ApiPrincipal`) may see. `None` is an anonymous caller: public
    templates only, so forgetting to pass the caller can never reveal a private template."""
    templates = AgentTemplate.objects.using(DB).all()
    if viewer is not None and viewer.is_operator:
        return templates
    visible = Q(visibility=Visibility.PUBLIC)
    owner_id = getattr(viewer, "owner_id", None)
    if owner_id:
        visible |= Q(creator_id=owner_id)
    return templates.filter(visible)


def template_list(*, viewer: Any, visibility: str | None = None, creator_id: str | None = None) -> list[AgentTemplate]:
    """Public templates plus the viewer's own (the operator: all), newest first."""
    templates = template_queryset(viewer=viewer)
    if visibility is not None:
        templates = templates.filter(visibility=visibility)
    if creator_id is not None:
        templates = templates.filter(creator_id=creator_id)
    return list(templates.order_by("-created_at", "id"))


def template_get(*, template_id: str, viewer: Any) -> AgentTemplate:
    """The template, or NotFound when it does not exist or the viewer may not see it."""
    template = template_queryset(viewer=viewer).filter(pk=template_id).first() if template_id_possible(template_id) else None
    if template is None:
        raise template_not_found(template_id)
    return template


def template_id_possible(template_id: str) -> bool:
    """False for ids no row can have; NUL in particular would make PostgreSQL fail the query."""
    return isinstance(template_id, str) and bool(template_id) and len(template_id) <= MAX_ID and "\x00" not in template_id


def template_not_found(template_id: str) -> NotFound:
    """The one answer for "does not exist" and "not yours to see": the two must not differ."""
    return NotFound(f"No template {template_id[:80]}")
