"""Creating and destroying instances: the pool's side of services' infra lifecycle."""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from convos.concurrency import map_concurrently
from pool_app.models import Instance, InstanceStatus
from pool_app.transitions import record_events, transition
from services_app import facade as services

logger = logging.getLogger(__name__)
DB = "pool"
# deploy_status of a row whose services create-instance call has not returned yet.
CREATING = "creating"


def instances_create(*, count: int, actor: str, concurrency: int) -> list[str]:
    """Create `count` instances; returns the ids that services created.

    The pool row is written first, as `starting`, so an instance being created already counts
    toward the pool's size (no second top-up creates it again) and a crash mid-create leaves a row
    the tick reconciles (services then reports it `not_found`) instead of an orphan nobody knows.
    """
    if count <= 0:
        return []
    now = timezone.now()
    rows = [Instance(status=InstanceStatus.STARTING, deploy_status=CREATING, unhealthy_since=now) for _ in range(count)]
    with transaction.atomic(using=DB):
        Instance.objects.using(DB).bulk_create(rows)
        record_events(instance_ids=[r.pk for r in rows], from_status="", to_status=InstanceStatus.STARTING, reason="created", actor=actor)

    def create(instance_id: str) -> str | None:
        try:
            created = services.create_instance(instance_id)
        except services.ServicesError as exc:
            logger.warning("creating instance %s failed: %s", instance_id, exc.message)
            transition(instance_id, from_status=InstanceStatus.STARTING, to_status=InstanceStatus.DELETED, actor=actor,
                       reason=f"create failed: {exc.message}", last_error=exc.message, deleted_at=timezone.now())
            return None
        Instance.objects.using(DB).filter(pk=instance_id).update(url=created["url"], deploy_status="deploying")
        return instance_id

    return [i for i in map_concurrently(create, [r.pk for r in rows], max_workers=concurrency) if i]


def instance_destroy(*, instance_id: str, actor: str, reason: str) -> bool:
    """Tear the instance down through services, then mark it deleted (the row stays as a record).

    An idle instance is first moved to `dead` with a conditional update, so a claim racing with
    the destroy can never take it. Services goes next: if it fails the instance keeps its status
    and a later tick retries, so a row is never marked deleted while something of it may run.
    """
    instance = Instance.objects.using(DB).filter(pk=instance_id).first()
    if instance is None or instance.status in (InstanceStatus.DELETED, InstanceStatus.CLAIMING):
        return False
    status = instance.status
    if status == InstanceStatus.IDLE:
        if not transition(instance_id, from_status=status, to_status=InstanceStatus.DEAD, actor=actor, reason=f"{reason} (taken out of idle)"):
            return False  # claimed meanwhile: not ours to destroy any more
        status = InstanceStatus.DEAD
    try:
        services.destroy(instance_id)
    except services.ServicesError as exc:
        Instance.objects.using(DB).filter(pk=instance_id).update(last_error=exc.message)
        logger.warning("destroying %s failed: %s", instance_id, exc.message)
        return False
    return transition(instance_id, from_status=status, to_status=InstanceStatus.DELETED, actor=actor,
                      reason=reason, deleted_at=timezone.now())
