"""Soak: the pool under a steady load while a fault injector breaks things; then check invariants.

For SOAK_MINUTES (default 30), on the fake infra provider (in-process instances behind one HTTP
server, services_app/providers/fake.py) and PostgreSQL (databases convos_soak_{default,pool,
services,templates} at 127.0.0.1:5432, created if missing, emptied first):

- claimers: a steady stream of claims through `instance_claim` (the API's one claim function):
  a third from a template, about half with an Idempotency-Key (retried with the same key after a
  5xx, then replayed once to check the same answer comes back);
- an operator: destroys claimed instances (keeping the pool cycling), redeploys and rechecks;
- a tick (`pool_tick`) every SOAK_TICK_S (default 2) seconds;
- a fault injector: every provider call fails with SOAK_FAULT_RATE (default 0.1) as a 429 with
  Retry-After, a 5xx or a timeout (half the timeouts of a create or destroy happen after the
  provider did it: the answer is lost); instances are killed (gone from the fleet) or stop
  answering health for a while; provisions fail half-way; and now and then the status query fails
  for everyone for a few seconds.

Then faults off, a final orphan sweep and a few ticks, and the invariants (printed; exit 1 if one
fails): rows match provider resources exactly; no instance handed out twice; no instance the
tick destroyed while it was healthy; nothing stuck in a transient status; no unexpected 500s;
provider calls per hour within the budget. Also printed: instances per status, p50/p99 claim
latency. `run()` is the main loop; tests/test_soak_short.py runs it for ~25 s.
Usage: SOAK_MINUTES=3 python -m bench.soak (or `make soak`).
"""
from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from bench.databases import flush_all, isolated_environment, use_postgres

# Railway's API budget (bench/railway_budget.py): the fake provider's calls are counted against it.
BUDGET_PER_HOUR = 10_000
OPERATOR_ACTOR = "cli"
# The pool while soaking: small timeouts so recoveries happen within minutes, not the defaults' hours.
SOAK_SETTINGS: dict[str, Any] = {
    "INFRA_PROVIDER": "fake", "FAKE_FLEET_URL": "", "POOL_MIN_IDLE": 12, "POOL_MAX_TOTAL": 40, "POOL_CREATE_CONCURRENCY": 4,
    "TICK_CALL_CONCURRENCY": 4, "CLAIM_TIMEOUT_MS": 6_000, "POOL_CREATE_TIMEOUT_MS": 8_000, "POOL_STUCK_TIMEOUT_MS": 20_000,
    "ORPHAN_SWEEP_MS": 15_000, "ORPHAN_GRACE_MS": 10_000, "ORPHAN_SWEEP_DELETE": True, "POOL_REFILL_AFTER_CLAIM": False,
    "POOL_STARTING_RECHECK_MS": 0, "HEALTH_CHECK_TIMEOUT_S": 2.0,
}


# --- faults -----------------------------------------------------------------------------------------
@dataclass
class Faults:
    """What the injector does to the fake provider and the services facade; `on` switches it all."""

    rng: random.Random
    rate: float
    on: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    injected: Counter = field(default_factory=Counter)
    touched: set[str] = field(default_factory=set)  # instances a fault made unhealthy or removed
    muted: dict[str, float] = field(default_factory=dict)  # instance -> monotonic time it answers again
    status_down_until: float = 0.0

    def provider_call(self, name: str, instance_id: str | None, call):
        from services_app.providers.base import ProviderError

        with self.lock:
            self.calls[name] += 1
            roll = self.rng.random() if self.on else 1.0
            kind = self.rng.choice(["429", "5xx", "timeout"])
        if roll >= self.rate:
            return call()
        with self.lock:
            self.failed[f"{name}:{kind}"] += 1
        if kind == "429":
            raise ProviderError("429 Too Many Requests: retry after 2 s")
        if kind == "5xx":
            raise ProviderError("503 Service Unavailable")
        if name in ("create", "destroy", "destroy_unrecorded") and roll < self.rate / 2:
            result = call()  # the provider did it; its answer is lost
            if instance_id:
                with self.lock:
                    self.touched.add(instance_id)
            del result
        raise ProviderError("Read timed out (10 s)")

    def health_muted(self, instance_id: str) -> bool:
        until = self.muted.get(instance_id)
        return until is not None and time.monotonic() < until


def _install(stack: ExitStack, faults: Faults) -> None:
    """Wrap the fake provider's calls, its health handler and the facade's status batch."""
    from services_app import facade
    from services_app.providers import fake
    from services_app.services import ServicesError

    def wrap(name: str):
        original = getattr(fake.FakeProvider, name)

        def wrapped(self, *args, **kwargs):
            ref = kwargs.get("ref") or kwargs.get("instance_id") or kwargs.get("resource") or (args[0] if args else None)
            instance_id = getattr(ref, "instance_id", ref) if not isinstance(ref, list) else None
            return faults.provider_call(name, instance_id if isinstance(instance_id, str) else None,
                                        lambda: original(self, *args, **kwargs))
        return wrapped

    for name in ("create", "destroy", "deploy_states", "redeploy", "destroy_unrecorded", "list_owned"):
        stack.enter_context(mock.patch.object(fake.FakeProvider, name, wrap(name)))

    original_get = fake._Handler.do_GET

    def do_get(handler):
        parts = handler.path.split("/")
        if len(parts) > 3 and parts[1] == "i" and handler.path.endswith("/pool/health") and faults.health_muted(parts[2]):
            handler._send(503, {"error": "not answering"})
            return
        original_get(handler)

    stack.enter_context(mock.patch.object(fake._Handler, "do_GET", do_get))
    original_batch = facade.status_batch

    def status_batch(instance_ids):
        if faults.on and time.monotonic() < faults.status_down_until:
            raise ServicesError("status query failing (soak fault)", code="status_failed")
        return original_batch(instance_ids)

    stack.enter_context(mock.patch.object(facade, "status_batch", status_batch))


def _inject(faults: Faults) -> str:
    """One random fault against the current fleet."""
    from services_app.providers import fake

    with fake._registry_lock:
        ids = sorted(fake._instances)
    roll = faults.rng.random()
    if not ids:
        return "none"
    victim = faults.rng.choice(ids)
    if roll < 0.3:
        with fake._registry_lock:
            fake._instances.pop(victim, None)
        kind = "kill"
    elif roll < 0.62:
        # Mostly brief (it comes back), sometimes past POOL_STUCK_TIMEOUT_MS (then it is replaced).
        faults.muted[victim] = time.monotonic() + faults.rng.choice([3, 6, 10, 30])
        kind = "mute_health"
    elif roll < 0.94:
        instance = fake.fake_instance(victim)
        if instance is not None:
            instance.provision_fail = True
        kind = "provision_fail"
    else:
        faults.status_down_until = time.monotonic() + faults.rng.choice([2, 3, 4])
        kind, victim = "status_down", ""
    with faults.lock:
        faults.injected[kind] += 1
        if victim:
            faults.touched.add(victim)
    return kind


# --- load ---------------------------------------------------------------------------------------------
@dataclass
class ClaimRecord:
    identity: str  # the Idempotency-Key, or a fresh id for a claim without one
    keyed: bool
    ok: bool
    code: str
    latency_ms: float
    instance_id: str = ""
    replayed: bool = False


@dataclass
class Load:
    records: list[ClaimRecord] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # a 500: something raised that is no DomainError
    replay_mismatch: int = 0
    operator: Counter = field(default_factory=Counter)
    ticks: int = 0
    tick_errors: Counter = field(default_factory=Counter)
    outage_ticks: int = 0
    overdue: Counter = field(default_factory=Counter)  # rows seen in a transient status well past its timeout
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: ClaimRecord) -> None:
        with self.lock:
            self.records.append(record)


def _claim_once(spec, key: str | None, load: Load, identity: str) -> ClaimRecord:
    from convos.errors import DomainError
    from pool_app.models import Actor
    from pool_app.services.claim import instance_claim

    started = time.perf_counter()
    try:
        result = instance_claim(spec=spec, actor=Actor.API, idempotency_key=key, owner_key="soak" if key else "")
        record = ClaimRecord(identity, bool(key), True, "ok", (time.perf_counter() - started) * 1000, result.instance_id, result.replayed)
    except DomainError as exc:
        record = ClaimRecord(identity, bool(key), False, f"{exc.status_code} {exc.code}", (time.perf_counter() - started) * 1000)
    except Exception as exc:  # noqa: BLE001 - the API would answer 500: an invariant failure
        with load.lock:
            load.unexpected.append(f"{exc.__class__.__name__}: {exc}"[:300])
        record = ClaimRecord(identity, bool(key), False, "500", (time.perf_counter() - started) * 1000)
    load.add(record)
    return record


def _claimer(stop: threading.Event, rng: random.Random, templates: list[str], load: Load) -> None:
    from pool_app.services.claim import claim_spec

    try:
        while not stop.is_set():
            template = rng.choice(templates) if rng.random() < 0.33 else None
            spec = claim_spec(template_id=template, agent_name=None if template else f"Soak {rng.randrange(1000)}",
                              instructions=None if template else "soak")
            if rng.random() < 0.5:
                key = f"soak-{rng.getrandbits(64):016x}"
                record = _claim_once(spec, key, load, key)
                for _ in range(3):  # a client retries a 5xx with the same key
                    if record.ok or not record.code.startswith("5") or stop.is_set():
                        break
                    time.sleep(0.5)
                    record = _claim_once(spec, key, load, key)
                if record.ok:
                    replay = _claim_once(spec, key, load, key)
                    if replay.ok and replay.instance_id != record.instance_id:
                        with load.lock:
                            load.replay_mismatch += 1
            else:
                _claim_once(spec, None, load, f"anon-{rng.getrandbits(64):016x}")
            stop.wait(rng.uniform(0.3, 1.5))
    finally:
        _close_connections()


def _operator(stop: threading.Event, rng: random.Random, load: Load) -> None:
    from django.utils import timezone

    from convos.errors import DomainError
    from pool_app.models import Instance, InstanceStatus as S
    from pool_app.services.operations import instance_destroy_one, instance_recheck, instance_redeploy_one

    try:
        while not stop.wait(rng.uniform(0.5, 1.5)):
            claimed = Instance.objects.using("pool").filter(status__in=[S.CLAIMED, S.CRASHED, S.PENDING_ACCEPTANCE, S.TAINTED]).exclude(claimed_at=None)
            # Users are done with their agents after a while: those go (the pool keeps cycling).
            done = list(claimed.filter(claimed_at__lt=timezone.now() - timedelta(seconds=15)).values_list("pk", flat=True)[:4])
            live = list(Instance.objects.using("pool").exclude(status__in=[S.DELETED, S.DESTROYING]).values_list("pk", flat=True))
            action = rng.choice(["destroy", "redeploy", "recheck"])
            pool = list(claimed.values_list("pk", flat=True)) if action == "destroy" else live
            for target in done:
                try:
                    instance_destroy_one(instance_id=target, actor=OPERATOR_ACTOR)
                    load.operator["destroy done"] += 1
                except DomainError as exc:
                    load.operator[f"destroy done refused ({exc.code})"] += 1
            if not pool:
                continue
            target = rng.choice(pool)
            try:
                if action == "destroy":
                    instance_destroy_one(instance_id=target, actor=OPERATOR_ACTOR)
                elif action == "redeploy":
                    instance_redeploy_one(instance_id=target, actor=OPERATOR_ACTOR)
                else:
                    instance_recheck(instance_id=target, actor=OPERATOR_ACTOR)
                load.operator[action] += 1
            except DomainError as exc:
                load.operator[f"{action} refused ({exc.code})"] += 1
            except Exception as exc:  # noqa: BLE001
                with load.lock:
                    load.unexpected.append(f"operator {action}: {exc.__class__.__name__}: {exc}"[:300])
    finally:
        _close_connections()


def _ticker(stop: threading.Event, every_s: float, load: Load) -> None:
    from pool_app.services import pool_tick

    try:
        while not stop.wait(every_s):
            report = _one_tick(load, pool_tick)
            if not report.get("outage"):  # an outage changes nothing by design: overdue rows wait for it to end
                _overdue(load, slack=timedelta(seconds=3 * every_s + 5))
    finally:
        _close_connections()


def _one_tick(load: Load, pool_tick) -> dict:
    try:
        report = pool_tick()
    except Exception as exc:  # noqa: BLE001 - pool_tick isolates its steps: it should never raise
        with load.lock:
            load.unexpected.append(f"tick raised {exc.__class__.__name__}: {exc}"[:300])
        return {}
    load.ticks += 1
    load.outage_ticks += bool(report.get("outage"))
    for step in report.get("errors") or {}:
        load.tick_errors[step] += 1
    return report


DESTROY_RETRY_SLACK = timedelta(seconds=30)


def _overdue(load: Load, *, slack: timedelta) -> None:
    """After a tick that was not an outage: rows in a transient status longer than its timeout
    (plus a few ticks of slack) are stuck: the tick's recovery steps did not take them."""
    from django.conf import settings
    from django.utils import timezone

    from pool_app.models import Instance, InstanceStatus as S
    from pool_app.services.fleet import CREATING

    now = timezone.now()
    claim = timedelta(milliseconds=settings.CLAIM_TIMEOUT_MS)
    rows = Instance.objects.using("pool")
    found = {
        "claiming": rows.filter(status=S.CLAIMING, claim_started_at__lt=now - claim - slack).count(),
        "resetting": rows.filter(status=S.RESETTING, status_changed_at__lt=now - claim - slack).count(),
        "creating": rows.filter(status=S.STARTING, deploy_status=CREATING,
                                created_at__lt=now - timedelta(milliseconds=settings.POOL_CREATE_TIMEOUT_MS) - slack).count(),
        # A failed destroy is retried by every tick once it is POOL_DESTROY_RETRY_MS old; under the injected failure
        # rate a few retries in a row can fail (the 30-minute soak saw 3 of 3,793 destroys take
        # 73-74 s). Fifteen ticks' worth of retries still failing is a stuck row, not bad luck.
        "destroying": rows.filter(status=S.DESTROYING,
                                  status_changed_at__lt=now - timedelta(milliseconds=settings.POOL_DESTROY_RETRY_MS) - slack
                                  - DESTROY_RETRY_SLACK).count(),
    }
    for status, n in found.items():
        if n:
            with load.lock:
                load.overdue[status] = max(load.overdue[status], n)


def _injector(stop: threading.Event, faults: Faults, every_s: float) -> None:
    while not stop.wait(faults.rng.uniform(0.5, 1.5) * every_s):
        _inject(faults)


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


# --- the run ------------------------------------------------------------------------------------------
@dataclass
class Result:
    lines: list[str]
    failures: list[str]
    claims_ok: int
    faults_injected: int
    ticks: int


def _templates() -> list[str]:
    from convos.auth import OPERATOR
    from templates_app.services import template_create

    return [template_create(viewer=OPERATOR, data={"agent_name": f"Soak template {n}", "instructions": f"soak template {n}",
                                                   "model": {"default": "", "allow_override": True}, "tools": []}).pk
            for n in range(2)]


def run(*, seconds: float, seed: int | None = None, tick_every_s: float = 2.0, fault_every_s: float = 1.0,
        fault_rate: float = 0.1, claimers: int = 3) -> Result:
    """Soak the pool for `seconds` of wall time with faults on, then settle and check invariants."""
    from django.test import override_settings

    from pool_app.services import pool_tick

    seed = seed if seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    faults = Faults(random.Random(rng.random()), fault_rate)
    load = Load()
    started = time.monotonic()
    with ExitStack() as stack:
        stack.enter_context(override_settings(**SOAK_SETTINGS))
        _install(stack, faults)
        templates = _templates()
        # Fill the pool before the faults start (a soak of a pool that never was full proves little).
        for _ in range(30):
            _one_tick(load, pool_tick)
            from pool_app.models import Instance, InstanceStatus as S

            if Instance.objects.using("pool").filter(status=S.IDLE).count() >= SOAK_SETTINGS["POOL_MIN_IDLE"]:
                break
            time.sleep(0.3)
        faults.on = True
        stop = threading.Event()
        threads = [threading.Thread(target=_ticker, args=(stop, tick_every_s, load), name="soak-tick"),
                   threading.Thread(target=_operator, args=(stop, random.Random(rng.random()), load), name="soak-operator"),
                   threading.Thread(target=_injector, args=(stop, faults, fault_every_s), name="soak-faults")]
        threads += [threading.Thread(target=_claimer, args=(stop, random.Random(rng.random()), templates, load), name=f"soak-claim-{n}")
                    for n in range(claimers)]
        for thread in threads:
            thread.start()
        try:
            stop.wait(seconds)
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
        soak_s = time.monotonic() - started
        final = _settle(faults, load)
        return _check(faults, load, soak_s=soak_s, seed=seed, final=final)


def _settle(faults: Faults, load: Load) -> list[dict]:
    """Faults off; recoveries due now (short timeouts, grace 0: no creation is in flight between
    ticks that run one after another); a final orphan sweep; ticks until nothing is transient."""
    from django.test import override_settings

    from pool_app.models import Instance, InstanceStatus as S
    from pool_app.services import pool_tick

    faults.on = False
    faults.muted.clear()
    from services_app.providers import fake

    with fake._registry_lock:
        for instance in fake._instances.values():
            instance.provision_fail = False
    reports = []
    with override_settings(CLAIM_TIMEOUT_MS=0, POOL_CREATE_TIMEOUT_MS=0, POOL_DESTROY_RETRY_MS=0, ORPHAN_SWEEP_MS=1, ORPHAN_GRACE_MS=0):
        for n in range(12):
            reports.append(_one_tick(load, pool_tick))
            transient = Instance.objects.using("pool").filter(status__in=[S.CLAIMING, S.RESETTING, S.DESTROYING, S.STARTING]).exists()
            if n >= 2 and not transient:
                break
            time.sleep(0.5)
    _close_connections()
    return reports


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _check(faults: Faults, load: Load, *, soak_s: float, seed: int, final: list[dict]) -> Result:
    from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
    from services_app.models import InstanceInfra
    from services_app.providers import fake

    lines: list[str] = []
    failures: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        lines.append(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}")
        if not ok:
            failures.append(f"{name}: {detail}")

    records = load.records
    ok = [r for r in records if r.ok]
    lines.append(f"soak: {soak_s:.0f} s with faults on (seed {seed}), then {len(final)} settling ticks with faults off")
    lines.append(f"  claims: {len(records)} calls, {len(ok)} ok ({sum(r.replayed for r in ok)} replayed), "
                 f"{sum(r.keyed for r in records)} with an Idempotency-Key; failures by code: "
                 f"{dict(Counter(r.code for r in records if not r.ok).most_common())}")
    latencies = [r.latency_ms for r in ok if not r.replayed]
    lines.append(f"  claim latency (successful, not replayed): p50 {_percentile(latencies, 0.5):.0f} ms, "
                 f"p99 {_percentile(latencies, 0.99):.0f} ms, max {max(latencies, default=0):.0f} ms")
    lines.append(f"  ticks: {load.ticks} ({load.outage_ticks} in outage), step errors: {dict(load.tick_errors)}")
    lines.append(f"  operator: {dict(load.operator)}")
    lines.append(f"  faults injected: {dict(faults.injected)}; provider calls failed: {dict(faults.failed)}")
    statuses = Counter(Instance.objects.using("pool").values_list("status", flat=True))
    lines.append(f"  instances per status: {dict(sorted(statuses.items()))}")

    # Rows vs provider resources, exactly. A claimed instance whose resource the injector removed
    # is `crashed` and kept (the tick never destroys someone's agent): listed, not a mismatch.
    live = set(Instance.objects.using("pool").exclude(status=S.DELETED).values_list("pk", flat=True))
    infra = set(InstanceInfra.objects.using("services").values_list("instance_id", flat=True))
    with fake._registry_lock:
        held = set(fake._instances)
    kept_crashed = set(Instance.objects.using("pool").filter(status=S.CRASHED, pk__in=live - held).values_list("pk", flat=True))
    rows_without = (live - held) - kept_crashed
    resources_without = held - live
    check("rows match provider resources", not rows_without and not resources_without and infra - kept_crashed == held,
          f"{len(live)} live rows, {len(infra)} services rows, {len(held)} provider instances; rows without a resource "
          f"{sorted(rows_without)}, resources without a row {sorted(resources_without)}, services rows off "
          f"{sorted((infra - kept_crashed) ^ held)}; crashed claimed instances kept {len(kept_crashed)}")

    transient = Instance.objects.using("pool").filter(status__in=[S.CLAIMING, S.RESETTING, S.DESTROYING]).count()
    creating = Instance.objects.using("pool").filter(status=S.STARTING, deploy_status="creating").count()
    check("nothing stuck in a transient status", transient == 0 and creating == 0 and not load.overdue,
          f"at the end {transient} claiming/resetting/destroying, {creating} creating; during the run, most rows past "
          f"their timeout after a tick: {dict(load.overdue) or 'none'}")

    # Duplicates: an instance id in the successful answers of two different claims (keys).
    by_instance: dict[str, set[str]] = defaultdict(set)
    for r in ok:
        by_instance[r.instance_id].add(r.identity)
    duplicates = {i: ids for i, ids in by_instance.items() if len(ids) > 1}
    handed = Counter(InstanceEvent.objects.using("pool").filter(from_status=S.CLAIMING, to_status__in=[S.CLAIMED, S.PENDING_ACCEPTANCE])
                     .values_list("instance_id", flat=True))
    twice = {i: n for i, n in handed.items() if n > 1}
    check("no instance handed out twice", not duplicates and not twice and load.replay_mismatch == 0,
          f"{len(duplicates)} instance ids in two claims' answers, {len(twice)} instances moved claiming -> claimed twice, "
          f"{load.replay_mismatch} replays with another instance")

    # Destroyed while healthy, outside an operator action: a tick's move to `destroying` of an
    # instance no fault touched (never killed, muted, or a lost create/destroy answer), other than
    # giving up a creation that never finished; and any tick destroy of an idle or claimed one.
    tick_destroys = list(InstanceEvent.objects.using("pool").filter(actor="tick", to_status=S.DESTROYING)
                         .values_list("instance_id", "from_status", "reason"))
    never_from = {S.IDLE, S.CLAIMED, S.PENDING_ACCEPTANCE, S.CLAIMING, S.RESETTING, S.CRASHED, S.SLEEPING}
    wrongful = [(i, f, r) for i, f, r in tick_destroys
                if f in never_from or (i not in faults.touched and f != S.STARTING and f != S.DESTROYING)]
    creations = sum(1 for _, f, _ in tick_destroys if f == S.STARTING)
    check("no healthy instance destroyed by the tick", not wrongful,
          f"{len(tick_destroys)} tick destroys ({creations} unfinished creations given up, "
          f"{dict(Counter(f for _, f, _ in tick_destroys))}); wrongful: {wrongful[:5]}")

    check("no unexpected errors (500s)", not load.unexpected, f"{len(load.unexpected)}: {load.unexpected[:5]}")
    # The budget is for what the pool spends on its own (status, listings): creates, destroys and
    # redeploys follow the load (one create and one destroy per instance the claims use up).
    calls = sum(faults.calls.values())
    own = faults.calls["deploy_states"] + faults.calls["list_owned"]
    hours = max(soak_s, 1) / 3600
    check("provider calls within budget", own / hours <= BUDGET_PER_HOUR,
          f"status and listing {own / hours:.0f}/hour against {BUDGET_PER_HOUR}/hour; all calls {calls / hours:.0f}/hour "
          f"({dict(faults.calls)}), {calls / max(len(ok), 1):.1f} per successful claim")
    last = final[-1] if final else {}
    lines.append(f"  final tick: errors {last.get('errors')}, orphan sweep {[r.get('steps', {}).get('orphan_sweep') for r in final][:1]}")
    return Result(lines, failures, len(ok), sum(faults.injected.values()), load.ticks)


# --- `python -m bench.soak` ----------------------------------------------------------------------------
def _prepare_environment() -> Path:
    var_dir = isolated_environment(var_prefix="convos-soak-", provider="fake", log_level=os.environ.get("SOAK_LOG_LEVEL", "ERROR"),
                                   unset=("FAKE_FLEET_URL",))
    os.environ["DB_CONN_MAX_AGE"] = "0"
    use_postgres("convos_soak")
    return var_dir


def main() -> int:
    import shutil

    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    var_dir = _prepare_environment()
    try:
        import django

        django.setup()
        flush_all()  # a clean slate: an earlier run's rows are not this run's
        seed = int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else None
        print(f"soak: {minutes:g} min on PostgreSQL (convos_soak_*), fake provider in-process; settings {SOAK_SETTINGS}", flush=True)
        result = run(seconds=minutes * 60, seed=seed, tick_every_s=float(os.environ.get("SOAK_TICK_S", "2")),
                     fault_every_s=float(os.environ.get("SOAK_FAULT_EVERY_S", "1.5")),
                     fault_rate=float(os.environ.get("SOAK_FAULT_RATE", "0.1")))
        print("\n".join(result.lines))
        print("soak: " + ("all invariants hold" if not result.failures else f"{len(result.failures)} invariant(s) FAILED"))
        return 1 if result.failures else 0
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
