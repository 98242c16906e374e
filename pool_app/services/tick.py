"""`pool_tick()`: one pass over the fleet, as a list of small isolated steps.

- Single-flight: a lock shared by every process; a second tick returns at once, saying it skipped
  (the production pool's ticks overlapped when one took longer than the interval).
- Isolated steps (observe, recover stale claims, reconcile claims, remove dead, retry failed
  teardowns, top up): each logs and records its own failure; the others still run.
- Outage guard: when the status batch fails, or too many healthy instances turn unreachable at
  once, nothing changes status and nothing is destroyed or created; the reason is recorded and
  shown in GET /api/pool/status. Steps read fresh state, so the next tick simply resumes.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from convos.concurrency import map_concurrently
from convos.metrics import TICK_DURATION, TICK_STEP_FAILURES
from convos.redaction import redact
from pool_app.config import PoolConfig, pool_config
from pool_app.models import CLAIMED_STATUSES, OWNED_STATUSES, Actor, Instance, InstanceStatus, PoolState, TickRecord
from pool_app.services.idempotency import claim_requests_prune
from pool_app.services.fleet import CREATING, creation_abandon, instance_destroy, instances_create
from pool_app.services.orphan_sweep import orphan_sweep
from pool_app.services.recovery import claim_recover, retake_stale_reset, take_and_reset
from pool_app.single_flight import single_flight
from pool_app.status_derivation import derive_status, reconcile_claim
from pool_app.transitions import BULK_CHUNK, transition, transition_many
from services_app import facade as services
from services_app.facade import deploy_states as STATES

logger = logging.getLogger(__name__)
from pool_app.db import DB

# The tick never moves these through observation: a claim, a reset or a destroy in progress owns
# its instance (overdue owners have their own steps); deleted is final.
_UNTOUCHED = OWNED_STATUSES | {InstanceStatus.DELETED}
TICK_HISTORY_DAYS = 7


class Outage(Exception):
    """Services' view of the fleet cannot be trusted this tick."""


@dataclass
class Observation:
    instance: Instance
    seen: dict[str, Any]
    target: str


@dataclass
class TickReport:
    started_at: float = field(default_factory=time.monotonic)
    steps: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str = ""
    outage: str = ""
    duration_ms: float = 0.0
    recheck_in_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "outage": self.outage,
            "recheckInMs": self.recheck_in_ms,
            "steps": self.steps,
            "errors": self.errors,
            "durationMs": round(self.duration_ms, 1),
        }


# --- observe ---------------------------------------------------------------------------------------
def _derive(instance: Instance, seen: dict[str, Any], *, now, config: PoolConfig) -> str:
    healthy = bool(seen.get("healthy"))
    unhealthy_for = (now - instance.unhealthy_since) if (not healthy and instance.unhealthy_since) else timedelta(0)
    target = derive_status(
        state=seen["status"],
        unhealthy_for=unhealthy_for,
        # Claimed-ness is a fact of the instance, not of its current status: a claimed instance
        # that slept or crashed is still someone's agent when it comes back.
        claimed=instance.claimed_at is not None,
        stuck_timeout=config.stuck_timeout,
    )
    if target == InstanceStatus.CLAIMED and instance.status in CLAIMED_STATUSES - {InstanceStatus.CRASHED}:
        target = instance.status  # keep pending_acceptance / tainted: their own step resolves them
    if target == InstanceStatus.IDLE and instance.needs_reset:
        # Healthy is not clean: it may hold a claim's conversation or credentials. Only a reset
        # it then reports clean (the cleanse step) makes it idle.
        target = InstanceStatus.CRASHED if instance.status == InstanceStatus.IDLE else instance.status
    return target


def _outage_reason(observations: list[Observation], config: PoolConfig) -> str:
    was_healthy = [o for o in observations if o.instance.deploy_status == STATES.HEALTHY]
    lost = [o for o in was_healthy if not o.seen.get("healthy")]
    if len(lost) >= config.outage_min_instances and len(lost) > config.outage_threshold * len(was_healthy):
        return (f"{len(lost)} of {len(was_healthy)} healthy instances turned unreachable in one tick "
                f"(threshold {config.outage_threshold:.0%}); treating it as an outage, not as deaths")
    return ""


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i:i + BULK_CHUNK] for i in range(0, len(ids), BULK_CHUNK)]


# What observing reads of an instance: the tick loads the whole fleet every time, so only these.
OBSERVED_FIELDS = ("id", "status", "deploy_status", "url", "unhealthy_since", "last_healthy_at", "claimed_at", "needs_reset")


def observe(instances: list[Instance], config: PoolConfig, *, actor: str = Actor.TICK, guard: bool = True) -> dict[str, Any]:
    """Ask services once about the given instances and apply what it says.

    With `guard`, a failed batch or a mass loss of health raises Outage before anything is written.
    """
    watched = [i for i in instances if i.status not in _UNTOUCHED and i.deploy_status != CREATING]
    if not watched:
        return {"checked": 0, "transitions": 0}
    try:
        observed = services.status_batch([i.pk for i in watched])
    except services.ServicesError as exc:
        raise Outage(f"status batch failed: {exc.message}") from exc
    except Exception as exc:  # whatever broke, the fleet's state is unknown this tick
        raise Outage(f"status batch failed: {exc.__class__.__name__}: {exc}") from exc
    now = timezone.now()
    missing = {"status": STATES.NOT_FOUND, "deployStatus": None, "healthy": False, "url": ""}
    observations = []
    for instance in watched:
        seen = observed.get(instance.pk) or missing
        observations.append(Observation(instance, seen, _derive(instance, seen, now=now, config=config)))
    if guard:
        reason = _outage_reason(observations, config)
        if reason:
            raise Outage(reason)

    # Only rows whose value changes are written, and the ids are worked out here from the rows
    # already read: a steady fleet writes nothing, and no statement carries thousands of ids
    # (each costs the driver time to parse and the database a long IN list).
    recovered_ids: list[str] = []   # healthy again: unhealthy_since cleared
    healthy_seen_ids: list[str] = []  # last_healthy_at missing or older than 5 minutes
    lost_ids: list[str] = []        # newly unhealthy: unhealthy_since set
    by_deploy_status: dict[str, list[str]] = defaultdict(list)
    stale_healthy = now - timedelta(minutes=5)
    # One bulk transition per (from, to, reason): a starting -> idle wave of thousands after a fill
    # is a few statements, each still conditional on the status this tick read.
    moves: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    new_urls: list[Instance] = []
    for o in observations:
        instance, seen = o.instance, o.seen
        if seen.get("healthy"):
            if instance.unhealthy_since is not None:
                recovered_ids.append(instance.pk)
            if instance.last_healthy_at is None or instance.last_healthy_at < stale_healthy:
                healthy_seen_ids.append(instance.pk)
        elif instance.unhealthy_since is None:
            lost_ids.append(instance.pk)
        if instance.deploy_status != seen["status"]:
            by_deploy_status[seen["status"]].append(instance.pk)
        if seen.get("url") and seen["url"] != instance.url:
            new_urls.append(Instance(pk=instance.pk, url=seen["url"]))
        if o.target != instance.status:
            reason = f"services reported {seen['status']} (deploy {seen.get('deployStatus') or 'unknown'})"
            moves[(instance.status, o.target, reason)].append(instance.pk)
    moved = sum(len(transition_many(ids, from_status=from_status, to_status=to_status, actor=actor, reason=reason))
                for (from_status, to_status, reason), ids in moves.items())
    # A handful of set-based writes instead of one UPDATE per instance, chunked like the moves.
    # Each keeps the condition it was computed from, so claims' SKIP LOCKED rarely meets a row
    # this holds and a row another process changed meanwhile is left alone.
    Instance.objects.using(DB).bulk_update(new_urls, ["url"], batch_size=BULK_CHUNK)
    for chunk in _chunks(recovered_ids):
        Instance.objects.using(DB).filter(pk__any=chunk).exclude(unhealthy_since=None).update(unhealthy_since=None)
    for chunk in _chunks(healthy_seen_ids):
        Instance.objects.using(DB).filter(models.Q(last_healthy_at=None) | models.Q(last_healthy_at__lt=stale_healthy),
                                          pk__any=chunk).update(last_healthy_at=now)
    for chunk in _chunks(lost_ids):
        Instance.objects.using(DB).filter(pk__any=chunk, unhealthy_since=None).update(unhealthy_since=now)
    for value, ids in by_deploy_status.items():
        for chunk in _chunks(ids):
            Instance.objects.using(DB).filter(pk__any=chunk).update(deploy_status=value)
    return {"checked": len(watched), "transitions": moved}


# --- the other steps -------------------------------------------------------------------------------
def recover_stale_claims(config: PoolConfig) -> dict[str, Any]:
    """Claims stuck in `claiming` past CLAIM_TIMEOUT_MS (their process died or hangs) and resets
    whose process died: reset the instance, then idle if clean, else crashed. Each recovery owns
    the row first (a conditional update) and does nothing if the claim completed meanwhile."""
    cutoff = timezone.now() - config.claim_timeout
    stale = list(Instance.objects.using(DB).filter(status=InstanceStatus.CLAIMING, claim_started_at__lt=cutoff).values_list("pk", flat=True))
    results = [claim_recover(pk, reason=f"claim older than {config.claim_timeout.total_seconds():.0f}s", actor=Actor.TICK) for pk in stale]
    orphaned_resets = list(Instance.objects.using(DB).filter(status=InstanceStatus.RESETTING, status_changed_at__lt=cutoff)
                           .values_list("pk", "status_changed_at"))
    results += [retake_stale_reset(pk, owned_since=since, actor=Actor.TICK, reason="reset left unfinished") for pk, since in orphaned_resets]
    return {"recovered": sum(1 for r in results if r), "idle": results.count(InstanceStatus.IDLE),
            "crashed": results.count(InstanceStatus.CRASHED), "dead": results.count(InstanceStatus.DEAD)}


def cleanse(config: PoolConfig) -> dict[str, Any]:
    """Unclaimed instances that may hold something of a claim (a failed claim's reset was not
    clean, a crash, a redeploy) and are healthy again: reset them, and let them back into the pool
    only if they then report themselves clean. After POOL_MAX_RESET_FAILURES they are replaced."""
    dirty = list(
        Instance.objects.using(DB)
        .filter(needs_reset=True, claimed_at=None, deploy_status=STATES.HEALTHY,
                status__in=[InstanceStatus.CRASHED, InstanceStatus.STARTING, InstanceStatus.IDLE])
        .values_list("pk", "status")
    )
    outcomes = map_concurrently(
        lambda row: take_and_reset(row[0], from_status=row[1], actor=Actor.TICK, reason=f"cleansing a {row[1]} instance before it may be idle"),
        dirty, max_workers=config.create_concurrency,
    )
    return {"reset": sum(1 for o in outcomes if o), "idle": outcomes.count(InstanceStatus.IDLE),
            "crashed": outcomes.count(InstanceStatus.CRASHED), "dead": outcomes.count(InstanceStatus.DEAD)}


def _conversations(instance_ids: list[str], *, what: str, verb: str) -> list[dict | None]:
    """What each instance reports of its conversation (`/convos/status`), in one services call;
    None where it did not answer (it is then left as it is this tick)."""
    if not instance_ids:
        return []
    try:
        answers = services.convos_status_batch(instance_ids)
    except services.ServicesError as exc:
        logger.warning("%ss not %s: %s", what, verb, exc.message)
        return [None] * len(instance_ids)
    out: list[dict | None] = []
    for instance_id in instance_ids:
        answer = answers.get(instance_id)
        if not answer or "error" in answer:
            logger.info("%s %s not %s: %s", what, instance_id, verb, (answer or {}).get("error", "no answer"))
            answer = None
        out.append(answer)
    return out


def audit_idle(config: PoolConfig) -> dict[str, Any]:
    """Ask a sample of idle instances (least recently checked first) whether they are bound: one
    that is (a claim that finished behind the pool's back, a stray call) is taken out of the pool
    as `tainted` and replaced; one that reports itself not clean is reset by `cleanse`."""
    if config.idle_audit_sample <= 0:
        return {"checked": 0}
    sample = list(Instance.objects.using(DB).filter(status=InstanceStatus.IDLE)
                  .order_by(models.F("audited_at").asc(nulls_first=True), "created_at")
                  .values_list("pk", flat=True)[: config.idle_audit_sample])

    answers = _conversations(sample, what="idle instance", verb="audited")
    bound = unclean = 0
    for instance_id, reported in zip(sample, answers):
        if reported is None:
            continue
        if reported.get("conversationId") or reported.get("pending"):
            bound += transition(instance_id, from_status=InstanceStatus.IDLE, to_status=InstanceStatus.TAINTED, actor=Actor.TICK,
                                reason=f"idle instance reports conversation {reported.get('conversationId') or '(pending join)'}",
                                needs_reset=True)
        elif reported.get("clean") is not True:
            unclean += transition(instance_id, from_status=InstanceStatus.IDLE, to_status=InstanceStatus.CRASHED, actor=Actor.TICK,
                                  reason="idle instance reports itself not clean", needs_reset=True)
    Instance.objects.using(DB).filter(pk__in=sample, status=InstanceStatus.IDLE).update(audited_at=timezone.now())
    return {"checked": len(sample), "bound": bound, "unclean": unclean}


def reconcile_creations(config: PoolConfig) -> dict[str, Any]:
    """Rows whose creation never finished (the worker died, the answer was lost) past
    POOL_CREATE_TIMEOUT_MS: whatever the provider holds for them is destroyed and the row deleted."""
    cutoff = timezone.now() - config.create_timeout
    overdue = list(Instance.objects.using(DB).filter(status=InstanceStatus.STARTING, deploy_status=CREATING, created_at__lt=cutoff)
                   .values_list("pk", flat=True))
    done = sum(creation_abandon(instance_id=pk, actor=Actor.TICK,
                                reason=f"creation unfinished after {config.create_timeout.total_seconds():.0f}s") for pk in overdue)
    return {"abandoned": done, "failed": len(overdue) - done}


def reconcile_claims(config: PoolConfig) -> dict[str, Any]:
    """Ask each healthy claimed instance which conversation it holds (concurrently, bounded):
    pending joins become claimed once accepted; a conversation other than the recorded one makes
    the instance `tainted` (and a match makes it `claimed` again)."""
    claims = list(
        Instance.objects.using(DB)
        .filter(status__in=[InstanceStatus.CLAIMED, InstanceStatus.PENDING_ACCEPTANCE, InstanceStatus.TAINTED], deploy_status=STATES.HEALTHY)
        .only("pk", "status", "conversation_id")
    )

    answers = _conversations([i.pk for i in claims], what="claimed instance", verb="checked")
    moved: dict[str, int] = defaultdict(int)
    for instance, reported in zip(claims, answers):
        if reported is not None and (target := apply_reported_binding(instance, reported, actor=Actor.TICK)):
            moved[target] += 1
    return {"checked": len(claims), **{f"to_{k}": v for k, v in moved.items()}}


def apply_reported_binding(instance: Instance, reported: dict[str, Any], *, actor: str) -> str | None:
    """Move a claimed instance by what it reports of its conversation (`/convos/status`); returns
    the new status, or None when it stays (or another process moved it first)."""
    target, conversation = reconcile_claim(current=instance.status, recorded_conversation=instance.conversation_id, reported=reported)
    if target != instance.status and transition(
        instance.pk, from_status=instance.status, to_status=target, actor=actor, conversation_id=conversation,
        reason=f"instance reports conversation {reported.get('conversationId') or 'none'}"
        + (" (pending acceptance)" if reported.get("pending") else ""),
    ):
        return target
    return None


def remove_dead(config: PoolConfig) -> dict[str, Any]:
    """Destroy unclaimed instances that are dead or stuck, unclaimed tainted ones (bound to a
    conversation nobody claimed from the pool; kept POOL_STUCK_TIMEOUT_MS for an operator to look
    at), and finish destroys that did not complete; top-up refills."""
    now = timezone.now()
    unclaimed = (Instance.objects.using(DB)
                 .filter(models.Q(status__in=[InstanceStatus.DEAD, InstanceStatus.STUCK])
                         | models.Q(status=InstanceStatus.TAINTED, status_changed_at__lt=now - config.stuck_timeout),
                         protected=False, claimed_at=None)
                 .exclude(pk__in=config.protected_ids))
    unfinished = Instance.objects.using(DB).filter(status=InstanceStatus.DESTROYING,
                                                   status_changed_at__lt=now - timedelta(milliseconds=settings.POOL_DESTROY_RETRY_MS))
    doomed = list(unclaimed.values_list("pk", "status")) + list(unfinished.values_list("pk", "status"))
    destroyed = map_concurrently(
        lambda row: instance_destroy(instance_id=row[0], actor=Actor.TICK, reason=f"replacing {row[1]} instance"),
        doomed,
        max_workers=config.create_concurrency,
    )
    return {"destroyed": sum(destroyed), "failed": len(doomed) - sum(destroyed)}


def retry_teardowns(config: PoolConfig) -> dict[str, Any]:
    """Finish external resources of deleted instances whose destroy failed earlier (services keeps them)."""
    return services.teardown_retry()


def top_up(config: PoolConfig) -> dict[str, Any]:
    """Create instances until idle + starting reaches min idle, within the unclaimed cap.

    Rows being created count as starting, and only one tick runs at a time, so concurrent claims
    and ticks never create more than the deficit.
    """
    live = Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED)
    # A starting instance that must be reset first is not coming: it may never be clean.
    ready_or_coming = live.filter(status__in=[InstanceStatus.IDLE, InstanceStatus.STARTING], needs_reset=False).count()
    unclaimed = live.filter(claimed_at=None).exclude(status=InstanceStatus.CLAIMING).count()
    deficit = config.min_idle - ready_or_coming
    room = config.max_total - unclaimed
    count = max(0, min(deficit, room))
    note = ""
    if deficit > 0 and room < deficit:
        note = f"POOL_MAX_TOTAL={config.max_total} caps unclaimed instances: {max(room, 0)} of {deficit} created"
        logger.warning(note)
    created = instances_create(count=count, actor=Actor.TICK, concurrency=config.create_concurrency)
    return {"deficit": max(deficit, 0), "requested": count, "created": len(created), **({"capped": note} if note else {})}


def _recheck_in_ms(config: PoolConfig) -> int | None:
    """Ask for an early next tick while the pool is short of idle instances and some are starting."""
    delay = settings.POOL_STARTING_RECHECK_MS
    if delay <= 0 or config.paused:
        return None
    live = Instance.objects.using(DB)
    if live.filter(status=InstanceStatus.IDLE).count() >= config.min_idle:
        return None
    return delay if live.filter(status=InstanceStatus.STARTING).exists() else None


# --- the tick ----------------------------------------------------------------------------------------
def _record(report: TickReport) -> None:
    state, _ = PoolState.objects.using(DB).get_or_create(pk=1)
    now = timezone.now()
    state.last_tick_at = now
    state.last_tick_report = report.as_dict()
    if report.outage:
        state.outage_since = state.outage_since if state.outage else now
        state.outage, state.outage_reason = True, report.outage
    else:
        state.outage, state.outage_reason, state.outage_since = False, "", None
    state.save(using=DB)
    TickRecord.objects.using(DB).create(
        at=now, duration_ms=report.duration_ms, skipped=bool(report.skipped), outage=report.outage or "", errors=report.errors,
        steps=report.steps, idle=Instance.objects.using(DB).filter(status=InstanceStatus.IDLE).count())
    # The history is for the dashboard, not a ledger: a week of it (an indexed range delete).
    TickRecord.objects.using(DB).filter(at__lt=now - timedelta(days=TICK_HISTORY_DAYS)).delete()


def pool_tick() -> dict[str, Any]:
    """Run every step once (unless another tick is running) and report what each did."""
    report = TickReport()
    with single_flight("pool-tick") as acquired:
        if not acquired:
            report.skipped = "another tick is running"
            logger.info("tick skipped: another tick is running")
            return report.as_dict()
        config = pool_config()

        def run(name: str, step) -> None:
            try:
                report.steps[name] = step()
            except Outage:
                raise
            except Exception as exc:  # isolate steps: log, record, carry on with the next one
                logger.exception("tick step %s failed", name)
                TICK_STEP_FAILURES.labels(name).inc()
                report.errors[name] = redact(f"{exc.__class__.__name__}: {exc}")

        try:
            # Only what observing reads (instructions alone can be 100k characters per claimed instance).
            live = Instance.objects.using(DB).exclude(status=InstanceStatus.DELETED).only(*OBSERVED_FIELDS)
            run("observe", lambda: observe(list(live), config))
        except Outage as outage:
            report.outage = redact(str(outage))
            logger.warning("tick: outage, changing nothing: %s", report.outage)
        if not report.outage:
            run("recover_stale_claims", lambda: recover_stale_claims(config))
            run("reconcile_claims", lambda: reconcile_claims(config))
            run("audit_idle", lambda: audit_idle(config))
            run("prune_claim_requests", lambda: {"deleted": claim_requests_prune()})
            run("cleanse", lambda: cleanse(config))
            if config.paused:
                report.steps["paused"] = "pool is paused: nothing destroyed or created"
            else:
                run("reconcile_creations", lambda: reconcile_creations(config))
                run("remove_dead", lambda: remove_dead(config))
                run("retry_teardowns", lambda: retry_teardowns(config))
                run("top_up", lambda: top_up(config))
            run("orphan_sweep", lambda: orphan_sweep(config))  # paused too: it reports, and deletes nothing while paused
        report.recheck_in_ms = _recheck_in_ms(config)
        report.duration_ms = (time.monotonic() - report.started_at) * 1000
        TICK_DURATION.observe(report.duration_ms / 1000)
        try:
            _record(report)
        except Exception:
            logger.exception("recording the tick report failed")
    logger.info("tick done in %.0f ms: %s", report.duration_ms, report.steps)
    return report.as_dict()
