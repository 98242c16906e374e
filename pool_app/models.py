"""Pool database: orchestration state only. Infra and provider ids live in the services database."""
from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from runtime import kinds, limits

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_instance_id() -> str:
    # Lower-case letters and digits only: the id also names the Railway project and its domain.
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class InstanceStatus(models.TextChoices):
    STARTING = "starting", "starting"  # created, not yet healthy
    IDLE = "idle", "idle"  # healthy, unclaimed: can be handed out
    CLAIMING = "claiming", "claiming"  # reserved by a claim that is provisioning it
    RESETTING = "resetting", "resetting"  # owned by a recovery: being factory-reset, then idle only if clean
    CLAIMED = "claimed", "claimed"  # bound to a conversation
    PENDING_ACCEPTANCE = "pending_acceptance", "pending acceptance"  # joined, owner not yet accepted
    TAINTED = "tainted", "tainted"  # instance reports another conversation than the pool recorded
    CRASHED = "crashed", "crashed"  # a claimed instance whose deploy died (never destroyed by the tick)
    DEAD = "dead", "dead"  # an unclaimed instance whose deploy died
    SLEEPING = "sleeping", "sleeping"  # the infra put it to sleep; not dead
    STUCK = "stuck", "stuck"  # unclaimed and unhealthy for longer than POOL_STUCK_TIMEOUT_MS
    DESTROYING = "destroying", "destroying"  # owned by a destroy: being torn down (retried until it is gone)
    DELETED = "deleted", "deleted"  # torn down; the row stays for the record


# Statuses whose row is owned by one process doing something to the instance (a claim, a reset, a
# destroy): observation never moves them; their owner, or the tick's recovery once the owner is
# overdue, does.
OWNED_STATUSES = frozenset({InstanceStatus.CLAIMING, InstanceStatus.RESETTING, InstanceStatus.DESTROYING})

# Statuses in which an instance belongs to a claimer.
CLAIMED_STATUSES = frozenset(
    {InstanceStatus.CLAIMED, InstanceStatus.PENDING_ACCEPTANCE, InstanceStatus.TAINTED, InstanceStatus.CRASHED}
)


class RuntimeKind(models.TextChoices):
    """What an instance runs (its /pool/health `runtime`): this project's runtime, or the production
    image's two kinds. A claim's `runtime` picks among them."""

    CONVOS_PYTHON = kinds.CONVOS_PYTHON, kinds.CONVOS_PYTHON
    OPENCLAW = kinds.OPENCLAW, kinds.OPENCLAW
    HERMES = kinds.HERMES, kinds.HERMES


# Statuses in which an instance holds its joinUrl: one owner for the partial unique index below
# and for the claim's duplicate check.
HOLDS_JOIN_URL_STATUSES = (InstanceStatus.CLAIMING, InstanceStatus.CLAIMED, InstanceStatus.PENDING_ACCEPTANCE)


class InstanceQuerySet(models.QuerySet):
    def claimable(self, *, skip: frozenset[str] | set[str] = frozenset()) -> InstanceQuerySet:
        """The one definition of "may be handed out now": idle, clean (no reset owed), and not
        protected by the operator (the row's flag, or PROTECTED_INSTANCES in the settings)."""
        protected = frozenset(settings.PROTECTED_INSTANCES) | frozenset(skip)
        return self.filter(status=InstanceStatus.IDLE, protected=False, needs_reset=False).exclude(pk__in=protected)


class Actor(models.TextChoices):
    TICK = "tick", "tick"
    API = "api", "api"
    ADMIN = "admin", "admin"
    CLI = "cli", "cli"
    INSTANCE = "instance", "instance"  # the instance itself (self-provisioning through services)


class Instance(models.Model):
    objects = InstanceQuerySet.as_manager()

    id = models.CharField(primary_key=True, max_length=32, default=new_instance_id, editable=False)
    status = models.CharField(max_length=32, choices=InstanceStatus.choices, default=InstanceStatus.STARTING, db_index=True)
    # Copy of the services' URL (services is the source of truth) for client-facing answers.
    url = models.URLField(max_length=500, blank=True, default="")
    # Last status reported by the services batch: deploying, deploy_failed, healthy, unreachable, sleeping, not_found.
    deploy_status = models.CharField(max_length=32, blank=True, default="")
    agent_name = models.CharField(max_length=limits.AGENT_NAME_MAX, blank=True, default="")
    instructions = models.TextField(blank=True, default="")
    model = models.CharField(max_length=limits.MODEL_NAME_MAX, blank=True, default="")  # set at claim time (template default or override)
    join_url = models.URLField(max_length=limits.JOIN_URL_MAX, blank=True, default="")
    conversation_id = models.CharField(max_length=128, blank=True, default="")
    invite_url = models.URLField(max_length=500, blank=True, default="")
    template_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    runtime_kind = models.CharField(max_length=32, choices=RuntimeKind.choices, default=RuntimeKind.CONVOS_PYTHON)
    # What a production client sends with a claim, kept for the record (the instance got them too).
    source = models.CharField(max_length=limits.SOURCE_MAX, blank=True, default="")
    profile_image = models.URLField(max_length=limits.PROFILE_IMAGE_MAX, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    owner_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    parent_instance = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="clones")
    protected = models.BooleanField(default=False, help_text="Never claimed, drained or destroyed by the pool.")
    # May hold something of a claim (a conversation, credentials, instructions): set when a claim
    # reserves it, cleared only when a factory reset was followed by the instance reporting itself
    # clean. An instance with it set never becomes idle by observation alone.
    needs_reset = models.BooleanField(default=False)
    reset_failures = models.PositiveSmallIntegerField(default=0)  # resets in a row that did not come back clean
    audited_at = models.DateTimeField(null=True, blank=True)  # last time an idle instance's binding was checked
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    claim_started_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_healthy_at = models.DateTimeField(null=True, blank=True)
    unhealthy_since = models.DateTimeField(null=True, blank=True)
    template_synced_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instances"
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="instances_status_created"),
            # The claim's pick (`claimable`, oldest first) read straight off an index with no filter
            # and no sort: with 10,000 idle rows the planner otherwise sorted them all on every claim.
            models.Index(fields=["created_at"], name="instances_claimable_oldest",
                         condition=models.Q(status=InstanceStatus.IDLE, protected=False, needs_reset=False)),
        ]
        constraints = [
            # One conversation, one agent: a joinUrl being claimed or claimed cannot be claimed again,
            # even by two claims racing (the second one's reservation fails on this index).
            models.UniqueConstraint(
                fields=["join_url"],
                condition=~models.Q(join_url="") & models.Q(status__in=[str(s) for s in HOLDS_JOIN_URL_STATUSES]),
                name="instances_active_join_url_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_claimed(self) -> bool:
        return self.status in CLAIMED_STATUSES

    @property
    def is_protected(self) -> bool:
        """Protected by the operator: the row's flag, or PROTECTED_INSTANCES (the rule `claimable` applies)."""
        return self.protected or self.pk in settings.PROTECTED_INSTANCES


class InstanceEvent(models.Model):
    """Every status change, with why and who. Kept after the instance is deleted."""

    instance_id = models.CharField(max_length=32, db_index=True)
    from_status = models.CharField(max_length=32, blank=True, default="")
    to_status = models.CharField(max_length=32)
    reason = models.TextField(blank=True, default="")
    actor = models.CharField(max_length=16, choices=Actor.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "instance_events"
        ordering = ["-created_at", "-id"]
        # The dashboard counts claims per hour over a day: a range on one status, never a full scan.
        indexes = [models.Index(fields=["to_status", "created_at"], name="events_to_status_created")]

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.from_status or '-'} -> {self.to_status} ({self.actor})"


class PoolSettings(models.Model):
    """Operator overrides of the pool's knobs (one row). Empty fields fall back to the environment;
    the tick reads them at its start, so a change takes effect at the next tick."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    # Bounded: a typo (an extra zero or three) must not create thousands of paid instances or
    # make a dead instance wait a month before it is replaced.
    min_idle = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(1_000)],
                                           help_text="Empty: POOL_MIN_IDLE")
    max_total = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(20_000)],
                                            help_text="Empty: POOL_MAX_TOTAL (cap on unclaimed instances)")
    stuck_timeout_ms = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(60_000), MaxValueValidator(7 * 24 * 3600 * 1000)],
        help_text="Empty: POOL_STUCK_TIMEOUT_MS")
    create_concurrency = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(64)],
                                                     help_text="Empty: POOL_CREATE_CONCURRENCY")
    paused = models.BooleanField(default=False, help_text="Paused: the tick observes but creates and destroys nothing")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pool_settings"
        verbose_name = "pool settings"
        verbose_name_plural = "pool settings"

    def __str__(self) -> str:
        return "Pool settings"


class PoolSettingsChange(models.Model):
    field = models.CharField(max_length=64)
    old_value = models.CharField(max_length=200, blank=True, default="")
    new_value = models.CharField(max_length=200, blank=True, default="")
    changed_by = models.CharField(max_length=200)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "pool_settings_changes"
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value or '-'} -> {self.new_value or '-'} by {self.changed_by}"


class PoolState(models.Model):
    """What the last tick saw (one row): shown in GET /api/pool/status and in admin."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick_report = models.JSONField(default=dict, blank=True)
    outage = models.BooleanField(default=False)
    outage_reason = models.TextField(blank=True, default="")
    outage_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pool_state"


class TickRecord(models.Model):
    """One tick, for the dashboard's table and chart (kept TICK_HISTORY_DAYS)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    duration_ms = models.FloatField(default=0.0)
    idle = models.PositiveIntegerField(default=0)  # idle instances after the tick
    skipped = models.BooleanField(default=False)
    outage = models.TextField(blank=True, default="")
    errors = models.JSONField(default=dict, blank=True)
    steps = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "tick_records"
        ordering = ["-at"]


class TickLease(models.Model):
    """Single-flight lease for databases without advisory locks (SQLite)."""

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=64, blank=True, default="")
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "tick_leases"


class ClaimRequest(models.Model):
    """A claim made with an Idempotency-Key: the same key and body get the same answer."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        SUCCEEDED = "succeeded", "succeeded"

    owner_key = models.CharField(max_length=200)  # who made it: keys are per client
    idempotency_key = models.CharField(max_length=200)
    body_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    instance_id = models.CharField(max_length=32, blank=True, default="")
    response = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)  # pruned after CLAIM_REQUEST_TTL_HOURS

    class Meta:
        db_table = "claim_requests"
        constraints = [models.UniqueConstraint(fields=["owner_key", "idempotency_key"], name="claim_request_unique_key")]


class ApiClient(models.Model):
    """A client of the REST API: its key is shown once and only its hash is kept."""

    name = models.CharField(max_length=200)
    owner_id = models.CharField(max_length=200, db_index=True, help_text="Recorded on the claims and templates this client makes")
    key_prefix = models.CharField(max_length=16, editable=False, help_text="First characters of the key, to recognise it")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_clients"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
