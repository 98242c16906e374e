"""Template-driven actions on claimed instances: clone one, push a changed template to all."""
from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from convos.auth import OPERATOR
from convos.errors import NotFound
from pool_app import selectors
from pool_app.models import Instance
from pool_app.services.claim import ClaimResult, claim_spec, instance_claim
from templates_app.selectors import template_get
from pool_app.transitions import record_event
from services_app import facade as services

logger = logging.getLogger(__name__)
from pool_app.db import DB


def instance_clone(*, instance_id: str, viewer: Any, actor: str, user_config: dict[str, Any] | None = None,
                   join_url: str | None = None) -> ClaimResult:
    """Claim a new instance from the same template and settings as `instance_id` (its parent).

    The viewer must own the source (the operator owns all); otherwise it does not exist for them.
    The user's credentials were never kept, so a template with user tools needs them again."""
    source = Instance.objects.using(DB).filter(pk=instance_id, claimed_at__isnull=False).first()
    if source is None or not (viewer or OPERATOR).can_see_owner(source.owner_id):
        raise NotFound(f"No claimed instance {instance_id}")
    spec = claim_spec(
        viewer=viewer, template_id=source.template_id or None, agent_name=source.agent_name, instructions=source.instructions,
        model=source.model or None, join_url=join_url, user_config=user_config,
        owner_id=(viewer.owner_id if viewer and not viewer.is_operator else source.owner_id) or "",
        parent_instance_id=source.pk,
    )
    return instance_claim(spec=spec, actor=actor)


def template_sync(*, template_id: str, actor: str) -> dict[str, Any]:
    """Push the template's name and instructions to every live instance claimed from it, through
    services' configure. Each instance succeeds or is reported with its error; none is skipped."""

    template = template_get(template_id=template_id, viewer=OPERATOR)
    synced: list[str] = []
    failed: dict[str, str] = {}
    for instance in selectors.instances_of_template(template_id):
        if instance.claimed_at is None:
            continue
        try:
            services.configure(instance.pk, agent_name=template.agent_name, instructions=template.instructions, update=True)
        except services.ServicesError as exc:
            failed[instance.pk] = exc.message
            Instance.objects.using(DB).filter(pk=instance.pk).update(last_error=f"template sync failed: {exc.message}")
            continue
        Instance.objects.using(DB).filter(pk=instance.pk).update(
            agent_name=template.agent_name, instructions=template.instructions, template_synced_at=timezone.now()
        )
        record_event(instance_id=instance.pk, from_status=instance.status, to_status=instance.status,
                     reason=f"template {template_id} synced", actor=actor)
        synced.append(instance.pk)
    if failed:
        logger.warning("template %s: %d instance(s) failed to sync", template_id, len(failed))
    return {"templateId": template_id, "synced": synced, "failed": failed}
