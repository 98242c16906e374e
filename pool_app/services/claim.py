"""The claim: the one function that hands an idle instance to a client.

API, admin and CLI all call `instance_claim`; nothing else moves an instance out of `idle`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from convos.auth import OPERATOR
from convos.errors import Conflict, DomainError, Unavailable, UpstreamFailed
from convos.log_format import logs_for_instance
from pool_app.invite_urls import InvalidInvite, normalize_join_url
from pool_app import metrics as claim_metrics
from pool_app.config import min_idle_sql, pool_config
from pool_app.models import HOLDS_JOIN_URL_STATUSES, Instance, InstanceStatus, RuntimeKind
from pool_app.services.idempotency import claim_once
from pool_app.services.recovery import claim_recover, late_claim_recover
from runtime.limits import DEFAULT_AGENT_NAME, DEFAULT_INSTRUCTIONS
from templates_app.selectors import template_get  # templates are resolved through their own app
from pool_app.transitions import log_transition, transition, with_events_sql
from services_app import facade as services

logger = logging.getLogger(__name__)
from pool_app.db import DB
_RESERVE_ATTEMPTS = 5
_BOUND_RETRIES = 3


class Invalid(DomainError):
    """A claim that cannot be made as asked (400); `field` names the offending field."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ClaimSpec:
    """Everything a claim needs, resolved and checked before any instance is taken."""

    agent_name: str
    instructions: str
    join_url: str | None = None
    model: str | None = None
    template_id: str = ""
    pool_tools: tuple[str, ...] = ()
    user_tools: tuple[str, ...] = ()
    # The user's own credentials: passed through to services, never stored or shown by the pool.
    user_config: dict[str, Any] | None = field(default=None, repr=False)
    owner_id: str = ""
    parent_instance_id: str | None = None
    # What the claimed instance may then provision for itself with its own token.
    self_provision_tools: tuple[str, ...] = ()
    # What production's clients send: passed to the instance (image, metadata) and recorded.
    profile_image: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""
    runtime: str | None = None  # claim only instances of this runtime kind


def claim_spec(
    *,
    viewer: Any = None,
    template_id: str | None = None,
    agent_name: str | None = None,
    instructions: str | None = None,
    model: str | None = None,
    join_url: str | None = None,
    user_config: dict[str, Any] | None = None,
    owner_id: str = "",
    parent_instance_id: str | None = None,
    profile_image: str | None = None,
    metadata: dict[str, str] | None = None,
    source: str = "",
    runtime: str | None = None,
) -> ClaimSpec:
    """Resolve the template (404 when the viewer cannot see it), apply the claim's own values, and
    check the model override and the user's credentials for the template's user tools (400 naming
    the field). Nothing here touches an instance."""
    if join_url:
        # Here too, not only in the API's serializer: the CLI and clones enter through this door.
        try:
            join_url = normalize_join_url(join_url, xmtp_env=settings.XMTP_ENV)
        except InvalidInvite as exc:
            raise Invalid(f"joinUrl: {exc}", field="joinUrl") from None
    pool_tools: tuple[str, ...] = ()
    user_tools: tuple[str, ...] = ()
    if template_id:

        template = template_get(template_id=template_id, viewer=viewer or OPERATOR)
        model_rule = template.model or {}
        if model and model != model_rule.get("default") and not model_rule.get("allow_override"):
            raise Invalid("model: this template does not allow overriding its model", field="model")
        model = model or model_rule.get("default") or None
        agent_name = agent_name or template.agent_name
        instructions = template.instructions if instructions is None else instructions
        pool_tools = tuple(t["id"] for t in template.tools if t.get("provisioning") == "pool")
        user_tools = tuple(t["id"] for t in template.tools if t.get("provisioning") == "user")
    # Production's defaults (its landing page sends only a joinUrl), and never "" instructions to
    # an instance: it would run with no persona at all.
    agent_name = agent_name or DEFAULT_AGENT_NAME
    instructions = instructions or DEFAULT_INSTRUCTIONS
    if runtime is not None and runtime not in RuntimeKind.values:
        raise Invalid(f"runtime: must be one of {', '.join(RuntimeKind.values)}", field="runtime")
    if pool_tools:
        # A tool removed or switched off since the template was saved fails here, not half-way.
        registry = {tool["toolId"]: tool for tool in services.registry()}
        for tool_id in pool_tools:
            tool = registry.get(tool_id)
            if tool is None:
                raise Invalid(f"templateId: the template's tool {tool_id!r} no longer exists", field="templateId")
            if not tool.get("enabled"):
                raise Unavailable(f"The template's tool {tool_id!r} is not available: {tool.get('reason') or 'disabled'}",
                                  code="tool_disabled")
    for tool_id in user_tools:
        if not isinstance(user_config, dict):
            raise Invalid(f"userConfig: required: the template's {tool_id!r} tool uses your own credentials", field="userConfig")
        try:
            services.check_user_config(tool_id, user_config)
        except services.ServicesError as exc:
            raise Invalid(f"userConfig: {exc.message}", field="userConfig") from None
    return ClaimSpec(
        agent_name=agent_name, instructions=instructions, join_url=join_url, model=model, template_id=template_id or "",
        pool_tools=pool_tools, user_tools=user_tools, user_config=user_config if user_tools else None,
        owner_id=owner_id, parent_instance_id=parent_instance_id,
        # A template grants exactly its pool tools; a claim without one, the operator's allow list.
        self_provision_tools=pool_tools if template_id else tuple(settings.SELF_PROVISION_TOOLS),
        profile_image=profile_image or None, metadata=dict(metadata or {}), source=source or "", runtime=runtime,
    )


@dataclass(frozen=True)
class ClaimResult:
    instance_id: str
    agent_name: str
    invite_url: str | None
    conversation_id: str | None
    joined: bool
    status: str
    provision_ms: float = field(default=0.0, compare=False)  # the instance's provisioning call (Server-Timing)
    replayed: bool = field(default=False, compare=False)  # an Idempotency-Key's stored answer, not a new claim

    def as_dict(self) -> dict[str, Any]:
        """The claim's answer without the QR image (drawing it is the renderer's job, when asked)."""
        return {
            "instanceId": self.instance_id,
            "agentName": self.agent_name,
            "inviteUrl": self.invite_url,
            "conversationId": self.conversation_id,
            "joined": self.joined,
            "status": self.status,
        }

    @classmethod
    def from_answer(cls, answer: dict[str, Any], *, replayed: bool) -> ClaimResult:
        return cls(instance_id=answer["instanceId"], agent_name=answer["agentName"], invite_url=answer.get("inviteUrl"),
                   conversation_id=answer.get("conversationId"), joined=bool(answer.get("joined")), status=answer["status"],
                   replayed=replayed)


@dataclass(frozen=True)
class _Reservation:
    instance_id: str
    # PostgreSQL: whether taking this instance leaves fewer than POOL_MIN_IDLE claimable, answered
    # by the reserving statement itself; None (SQLite): ask after the claim.
    leaves_pool_short: bool | None = None


def _reserve_idle_instance(*, actor: str, join_url: str | None, skip: frozenset[str] = frozenset(),
                           runtime: str | None = None) -> _Reservation | None:
    """Move the oldest claimable idle instance to `claiming` (None: nothing idle).

    On PostgreSQL, one `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) AND
    status = 'idle' RETURNING *` picks and reserves the row: concurrent claims pick different rows
    without waiting on each other, and the status condition means one instance is never reserved
    twice. SQLite has no row locks (Django drops the clause there); its IMMEDIATE transactions
    serialise claims instead, and the conditional update in `transition` is the guarantee. On
    both, the partial unique index on join_url makes sure one conversation is never claimed twice.
    """
    def claimable():
        idle = Instance.objects.using(DB).claimable(skip=skip)
        return idle.filter(runtime_kind=runtime) if runtime else idle

    for attempt in range(_RESERVE_ATTEMPTS):
        if connections[DB].vendor == "postgresql":
            # One statement (one round trip, atomic by itself) picks, reserves and records the row;
            # `transition` in a transaction stays the path on SQLite.
            reserved = _reserve_in_one_statement(skip=skip, runtime=runtime, actor=actor, join_url=join_url)
            if reserved is not None:
                return reserved
            if attempt + 1 < _RESERVE_ATTEMPTS and claimable().exists():
                time.sleep(0.01 * (attempt + 1))
                continue
            return None
        idle = claimable()
        with transaction.atomic(using=DB):
            candidate = idle.select_for_update(skip_locked=True).order_by("created_at").first()
            if candidate is None:
                # Every idle row may be locked for an instant by another claim's reservation:
                # only answer "none" when there is really none.
                if attempt + 1 < _RESERVE_ATTEMPTS and idle.exists():
                    time.sleep(0.01 * (attempt + 1))
                    continue
                return None
            try:
                with transaction.atomic(using=DB):
                    reserved = transition(
                        candidate.pk, from_status=InstanceStatus.IDLE, to_status=InstanceStatus.CLAIMING, actor=actor,
                        reason="claim started", claim_started_at=timezone.now(), join_url=join_url or "",
                        needs_reset=True,  # from now on it may hold something of this claim
                    )
            except IntegrityError:
                raise Conflict("This joinUrl is already being claimed or claimed", code="join_url_in_use") from None
            if reserved:
                return _Reservation(candidate.pk)
    return None


# Compiling a claimable query costs more than running it (~0.7 ms of Django query building per
# claim). Its SQL depends only on what `claimable` excludes, the runtime kind and whether it is the
# pick, so each distinct one is compiled once per process.
_COMPILED: dict[tuple, tuple[str, tuple]] = {}


def _claimable_sql(*, skip: frozenset[str] = frozenset(), runtime: str | None = None, pick: bool = False) -> tuple[str, tuple]:
    """The ids of the claimable rows; with `pick`, only the oldest one, FOR UPDATE SKIP LOCKED
    (spelt out: Django refuses to compile select_for_update() outside a transaction block, and the
    reservation needs none)."""
    key = (frozenset(settings.PROTECTED_INSTANCES), frozenset(skip), runtime, pick)
    cached = _COMPILED.get(key)
    if cached is None:
        rows = Instance.objects.using(DB).claimable(skip=skip)
        if runtime:
            rows = rows.filter(runtime_kind=runtime)
        if pick:
            rows = rows.order_by("created_at")[:1]
        sql, params = rows.values("pk").query.get_compiler(using=DB).as_sql()
        if len(_COMPILED) >= 256:  # retried claims' skip-sets are many and rare: stay bounded
            _COMPILED.clear()
        cached = _COMPILED[key] = (sql + " FOR UPDATE SKIP LOCKED" if pick else sql, tuple(params))
    return cached


def _leaves_short_sql() -> tuple[str, list[Any]]:
    """A boolean SQL expression: fewer than the effective POOL_MIN_IDLE claimable rows are left once
    the row being reserved is gone. Evaluated in the reserving statement's snapshot, where that
    row is still idle: counting stops at min_idle + 1 rows, so thousands idle cost nothing."""
    claimable_sql, claimable_params = _claimable_sql()
    min_idle, min_idle_params = min_idle_sql()
    return (f"(SELECT COUNT(*) FROM ({claimable_sql} LIMIT {min_idle} + 1) AS claimable) <= {min_idle}",
            [*claimable_params, *min_idle_params, *min_idle_params])


def _reserve_in_one_statement(*, skip: frozenset[str], runtime: str | None, actor: str, join_url: str | None) -> _Reservation | None:
    """PostgreSQL: pick (FOR UPDATE SKIP LOCKED) and reserve the oldest claimable row and record
    the same event as `transition`, in ONE statement: `WITH moved AS (UPDATE ... WHERE id = (SELECT
    ...) AND status = 'idle' RETURNING *), events AS (INSERT ...) SELECT id, <leaves the pool
    short> FROM moved`. The claim needs nothing else of the row, and the refill after the claim no
    statement of its own. None: no row was free (nothing idle, or every idle row locked by
    another claim just now)."""
    pick_sql, pick_params = _claimable_sql(skip=skip, runtime=runtime, pick=True)
    now = timezone.now()
    update_sql = (f"UPDATE {Instance._meta.db_table} SET status = %s, updated_at = %s, status_changed_at = %s, "
                  f"claim_started_at = %s, join_url = %s, needs_reset = %s "
                  f"WHERE id = ({pick_sql}) AND status = %s")
    params = [InstanceStatus.CLAIMING, now, now, now, join_url or "", True,  # from now on it may hold something of this claim
              *pick_params, InstanceStatus.IDLE]
    short_sql, short_params = _leaves_short_sql()
    sql, params = with_events_sql(update_sql, params, from_status=InstanceStatus.IDLE, to_status=InstanceStatus.CLAIMING,
                                  reason="claim started", actor=actor, select=f"id, {short_sql}", select_params=short_params)
    try:
        with connections[DB].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    except IntegrityError:
        raise Conflict("This joinUrl is already being claimed or claimed", code="join_url_in_use") from None
    if row is None:
        return None
    log_transition(row[0], from_status=InstanceStatus.IDLE, to_status=InstanceStatus.CLAIMING, actor=actor, reason="claim started")
    return _Reservation(row[0], leaves_pool_short=row[1])


def _within(deadline: float, step: str) -> None:
    if time.monotonic() > deadline:
        raise services.ServicesError(f"the claim ran past its deadline before {step}", code="claim_deadline")


@logs_for_instance
def _provision(instance_id: str, spec: ClaimSpec, provisioned: list[tuple[str, str]], *, deadline: float) -> dict[str, Any]:
    """Bind the instance first (its name, instructions and conversation): an instance that refuses
    (409, already bound to someone) has then seen nothing of this claim. Only once it accepted do
    the template's tools and the user's credentials go to it; each one given is appended to
    `provisioned`, so the caller can take them back if the claim does not complete."""
    answer = services.configure(instance_id, agent_name=spec.agent_name, instructions=spec.instructions,
                                join_url=spec.join_url, model=spec.model, self_provision_tools=spec.self_provision_tools,
                                profile_image=spec.profile_image, metadata=dict(spec.metadata) or None)
    for tool_id in spec.pool_tools:
        _within(deadline, f"giving {tool_id}")
        provisioned.append((tool_id, services.provision_tool(instance_id, tool_id)["resourceId"]))
    for tool_id in spec.user_tools:
        _within(deadline, f"giving {tool_id}")
        provisioned.append((tool_id, services.provision_tool(instance_id, tool_id, user_config=spec.user_config)["resourceId"]))
    return answer


@logs_for_instance
def _take_back(instance_id: str, provisioned: list[tuple[str, str]]) -> None:
    """Destroy the tools this claim gave (services keeps any it cannot destroy now for the tick's retry)."""
    for tool_id, resource_id in reversed(provisioned):
        try:
            services.destroy_tool(instance_id, tool_id, resource_id)
        except services.ServicesError as exc:
            logger.warning("rolling back %s of %s failed: %s", tool_id, instance_id, exc.message)


def instance_claim(*, spec: ClaimSpec, actor: str, idempotency_key: str | None = None, owner_key: str = "") -> ClaimResult:
    """Claim an idle instance for `spec` (built by `claim_spec`): the one entry of the API, the CLI,
    clones and tests. With an `idempotency_key`, the same key and claim from the same `owner_key`
    claim once: a repeat gets the stored answer (`replayed`), a different claim under the key a 409."""
    with claim_metrics.claim_timed() as measured:  # claims by outcome, pool vs provisioning time
        if not idempotency_key:
            return _claim(spec, actor)
        answer, replayed = claim_once(owner_key=owner_key, idempotency_key=idempotency_key, body=asdict(spec),
                                      claim=lambda: _claim(spec, actor))
        measured["outcome"] = "replayed" if replayed else "claimed"
        return answer if isinstance(answer, ClaimResult) else ClaimResult.from_answer(answer, replayed=replayed)


def _claim(spec: ClaimSpec, actor: str) -> ClaimResult:
    join_url = spec.join_url
    if join_url and Instance.objects.using(DB).filter(join_url=join_url, status__in=HOLDS_JOIN_URL_STATUSES).exists():
        raise Conflict("This joinUrl is already being claimed or claimed", code="join_url_in_use")
    tried: set[str] = set()
    # The claim stops starting new steps after two thirds of CLAIM_TIMEOUT_MS (each step is bounded
    # by PROVISION_TIMEOUT_S): the request ends on its own instead of holding a web thread, and
    # rarely outlives the point where the tick recovers it.
    deadline = time.monotonic() + settings.CLAIM_TIMEOUT_MS / 1000 * 2 / 3
    while True:
        if tried and time.monotonic() > deadline:
            raise UpstreamFailed("The claim ran past its deadline; retry", code="claim_deadline")
        reservation = _reserve_idle_instance(actor=actor, join_url=join_url, skip=frozenset(tried), runtime=spec.runtime)
        if reservation is None:
            of_kind = f" of runtime {spec.runtime}" if spec.runtime else ""
            raise Unavailable(f"No idle instance{of_kind} is available right now; the pool is refilling, retry shortly",
                              code="no_idle_instance")
        instance_id = reservation.instance_id
        started = time.perf_counter()
        provisioned: list[tuple[str, str]] = []
        try:
            with claim_metrics.provisioning():
                answer = _provision(instance_id, spec, provisioned, deadline=deadline)
            provision_ms = (time.perf_counter() - started) * 1000
            break
        except Exception as exc:  # whatever failed, the instance is recovered before the error goes on
            message = exc.message if isinstance(exc, services.ServicesError) else f"{exc.__class__.__name__}: {exc}"
            bound = isinstance(exc, services.ServicesError) and exc.code == "already_bound"
            _take_back(instance_id, provisioned)
            # The instance itself answered the provision with an error (not services, not the deadline).
            failed_itself = isinstance(exc, services.ServicesError) and exc.code == "runtime_failed"
            if claim_recover(instance_id, reason=f"provision failed: {message}", actor=actor, already_bound=bound,
                             instance_failed=failed_itself) is None:
                # The tick recovered this claim meanwhile: what the claim did after that reset
                # (a binding) may sit on an instance listed as idle.
                late_claim_recover(instance_id, actor=actor, reason="a failed claim finished after it was recovered")
            tried.add(instance_id)
            if not isinstance(exc, services.ServicesError):
                raise
            # An instance that says it is already bound was not really idle: try another one.
            if not bound or len(tried) >= _BOUND_RETRIES:
                raise UpstreamFailed(f"Provisioning instance {instance_id} failed: {message}", code="provision_failed") from exc

    pending = answer.get("status") == "pending_acceptance"
    to_status = InstanceStatus.PENDING_ACCEPTANCE if pending else InstanceStatus.CLAIMED
    now = timezone.now()
    claimed = transition(
        instance_id, from_status=InstanceStatus.CLAIMING, to_status=to_status, actor=actor,
        reason=f"claimed as {spec.agent_name!r}" + (f" from template {spec.template_id}" if spec.template_id else "")
        + (" (join pending acceptance)" if pending else ""),
        agent_name=spec.agent_name, instructions=spec.instructions, model=spec.model or "",
        conversation_id=answer.get("conversationId") or "", invite_url=answer.get("inviteUrl") or "",
        owner_id=spec.owner_id, claimed_at=now, last_error="", reset_failures=0, template_id=spec.template_id,
        template_synced_at=now if spec.template_id else None, parent_instance_id=spec.parent_instance_id,
        source=spec.source, profile_image=spec.profile_image or "", metadata=spec.metadata,
    )
    if not claimed:
        # Only the tick's recovery of a claim older than CLAIM_TIMEOUT_MS moves a `claiming`
        # instance: handing it out now would be a lie. What this claim did after that recovery's
        # reset (a binding, tools) is taken back, and the instance reset once more.
        logger.error("claim of %s finished after it was recovered; not handing it out", instance_id, extra={"instance_id": instance_id})
        _take_back(instance_id, provisioned)
        late_claim_recover(instance_id, actor=actor, reason="a claim finished after it was recovered")
        raise UpstreamFailed(f"Claim of instance {instance_id} timed out", code="claim_timed_out")
    _refill_if_short(reservation.leaves_pool_short)
    return ClaimResult(
        instance_id=instance_id,
        agent_name=spec.agent_name,
        invite_url=answer.get("inviteUrl"),
        conversation_id=answer.get("conversationId"),
        joined=bool(answer.get("joined")),
        status=answer.get("status") or "created",
        provision_ms=provision_ms,
    )


class _AtMostEvery:
    """True at most once per `interval_s` in this process, whichever thread asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")

    def __call__(self, interval_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < interval_s:
                return False
            self._last = now
            return True

    def reset(self) -> None:
        with self._lock:
            self._last = float("-inf")


_refill_asked = _AtMostEvery()


def _refill_if_short(leaves_pool_short: bool | None = None) -> bool:
    """After a successful claim: when fewer than POOL_MIN_IDLE claimable instances are left, ask for
    a tick now (once the claim is committed) instead of waiting up to a whole tick interval. The
    tick's single-flight lock keeps an extra one from overlapping a tick already running. True: one
    was asked for. POOL_REFILL_AFTER_CLAIM=False turns this off. `leaves_pool_short`: the answer
    of the reserving statement (PostgreSQL); None: count now.

    A burst of claims that drains the pool asks at most once per POOL_REFILL_MIN_INTERVAL_MS per
    process: one queued tick per claim would leave the worker running full ticks back to back
    (every one health-checking the fleet) until the queue's ticks expire, long after the burst."""
    if not settings.POOL_REFILL_AFTER_CLAIM:
        return False
    if leaves_pool_short is None:
        # The effective target: an operator's override in admin wins over the setting, as in the tick.
        min_idle = pool_config().min_idle
        # Counting stops at the target: with thousands idle, counting them all would cost the
        # claim more than the rest of its statements, only to compare the count with a small number.
        leaves_pool_short = Instance.objects.using(DB).claimable()[:min_idle].count() < min_idle
    if not leaves_pool_short:
        return False
    if not _refill_asked(settings.POOL_REFILL_MIN_INTERVAL_MS / 1000):
        return False
    transaction.on_commit(_enqueue_tick, using=DB)
    return True


def _enqueue_tick() -> None:
    """Send one tick to the queue; a broker that is down costs a log line, never the claim."""
    from pool_app.tasks import pool_tick_task  # tasks imports the services: not at module level

    try:
        # No publish retries: the claim's answer is waiting. The beat's tick comes anyway. Even with
        # retry=False, kombu's shared connection retries connecting for up to the broker connection
        # timeout (every 2 s), so a refused broker held the answer about 6 s: this publish gets a
        # connection of its own that tries once, with socket timeouts for a broker that accepts but
        # never answers. Only claims that leave the pool short get here, so one connect each is cheap.
        timeout = settings.REDIS_TIMEOUT_S
        with pool_tick_task.app.connection_for_write(
            connect_timeout=timeout,
            transport_options={"max_retries": 0, "socket_connect_timeout": timeout, "socket_timeout": timeout},
        ) as connection:
            pool_tick_task.apply_async(retry=False, expires=60, connection=connection)
    except Exception as exc:  # noqa: BLE001 - whatever the broker raises
        logger.warning("could not enqueue a refill tick after a claim: %s: %s", exc.__class__.__name__, exc)

