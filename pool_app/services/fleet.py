"""Creating and destroying instances: the pool's side of services' infra lifecycle."""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from convos.concurrency import map_concurrently
from convos.log_format import logs_for_instance
from pool_app.models import Instance, InstanceStatus
from pool_app.transitions import record_events, transition
from services_app import facade as services
from services_app.facade import deploy_states as STATES

logger = logging.getLogger(__name__)
from pool_app.db import DB
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
    rows = [Instance(status=InstanceStatus.STARTING, deploy_status=CREATING, unhealthy_since=now, runtime_kind=settings.POOL_RUNTIME_KIND)
            for _ in range(count)]
    with transaction.atomic(using=DB):
        Instance.objects.using(DB).bulk_create(rows)
        record_events(instance_ids=[r.pk for r in rows], from_status="", to_status=InstanceStatus.STARTING, reason="created", actor=actor)

    @logs_for_instance
    def create(instance_id: str) -> str | None:
        try:
            created = services.create_instance(instance_id)
        except Exception as exc:  # whatever failed, the provider may hold something: give it up cleanly
            message = exc.message if isinstance(exc, services.ServicesError) else f"{exc.__class__.__name__}: {exc}"
            logger.warning("creating instance %s failed: %s", instance_id, message)
            creation_abandon(instance_id=instance_id, actor=actor, reason=f"create failed: {message}")
            return None
        recorded = Instance.objects.using(DB).filter(pk=instance_id, status=InstanceStatus.STARTING, deploy_status=CREATING).update(
            url=created["url"], deploy_status=STATES.DEPLOYING)
        if not recorded:
            # The tick gave this creation up while it ran (older than POOL_CREATE_TIMEOUT_MS): what
            # it made now belongs to nobody.
            logger.warning("instance %s was created after its creation was abandoned; destroying it", instance_id)
            _abandon_at_services(instance_id)
            return None
        return instance_id

    return [i for i in map_concurrently(create, [r.pk for r in rows], max_workers=concurrency) if i]


def _abandon_at_services(instance_id: str) -> bool:
    try:
        services.abandon_creation(instance_id)
        return True
    except Exception as exc:  # noqa: BLE001 - the row stays `destroying`; the tick retries
        logger.warning("cleaning up the creation of %s failed: %s", instance_id, getattr(exc, "message", exc))
        Instance.objects.using(DB).filter(pk=instance_id).update(last_error=str(getattr(exc, "message", exc))[:2000])
        return False


@logs_for_instance
def creation_abandon(*, instance_id: str, actor: str, reason: str) -> bool:
    """Give up a creation that failed or never finished: own the row (`starting` while still
    creating -> `destroying`), remove whatever the provider holds for it, then `deleted`.
    Returns True once the row is deleted; a failed clean-up leaves it `destroying` for the tick."""
    if not transition(instance_id, from_status=InstanceStatus.STARTING, to_status=InstanceStatus.DESTROYING, actor=actor,
                      reason=reason, expect={"deploy_status": CREATING}, last_error=reason[:2000]):
        return False
    return _finish_destroy(instance_id, actor=actor, reason=reason)


def _finish_destroy(instance_id: str, *, actor: str, reason: str) -> bool:
    """The row is `destroying` and ours: tear it down at services, then mark it deleted."""
    creating = Instance.objects.using(DB).filter(pk=instance_id, deploy_status=CREATING).exists()
    if creating:
        if not _abandon_at_services(instance_id):
            return False
    else:
        try:
            services.destroy(instance_id)
        except services.ServicesError as exc:
            Instance.objects.using(DB).filter(pk=instance_id).update(last_error=exc.message)
            logger.warning("destroying %s failed: %s", instance_id, exc.message)
            return False
    return transition(instance_id, from_status=InstanceStatus.DESTROYING, to_status=InstanceStatus.DELETED, actor=actor,
                      reason=reason, deleted_at=timezone.now())


@logs_for_instance
def instance_destroy(*, instance_id: str, actor: str, reason: str) -> bool:
    """Tear the instance down through services, then mark it deleted (the row stays as a record).

    Ownership first: the row moves to `destroying` with a conditional update, so no claim can
    reserve it and no observation can move it back to idle while its infra goes away; a row owned
    by a claim or a reset is left to its owner. If services fails, the row stays `destroying`
    and the tick retries, so a row is never marked deleted while something of it may run.
    """
    instance = Instance.objects.using(DB).filter(pk=instance_id).only("status").first()
    if instance is None or instance.status in (InstanceStatus.DELETED, InstanceStatus.CLAIMING, InstanceStatus.RESETTING):
        return False
    if instance.status != InstanceStatus.DESTROYING and not transition(
        instance_id, from_status=instance.status, to_status=InstanceStatus.DESTROYING, actor=actor, reason=reason,
    ):
        return False  # it moved meanwhile (claimed, reset): not ours to destroy any more
    return _finish_destroy(instance_id, actor=actor, reason=reason)
