"""Railway API calls per hour spent on a fleet's status, against the 10,000 calls/hour budget.

For 100, 1,000 and 5,000 instances (BENCH_RAILWAY_SIZES), simulates one hour of the pool's status
batches (one every TICK_INTERVAL_MS) through the real services code (services.status_batch, the
real RailwayProvider and RailwayClient) against the Railway stand-in of the tests
(tests/services_app/fake_railway.py, faked at the HTTP layer with `responses`), and counts the
HTTP calls Railway receives. Time is simulated (status_batch's clock is moved on by hand); nothing
waits an hour. Every instance answers its health check (an idle, healthy fleet). Two fleets:

- idle: nothing changes;
- churn: 1% of the fleet per hour is destroyed and re-created, spread over the hour, each through
  the real RailwayProvider.destroy / create, so a creation costs its real number of calls.

"Before" is the status cost of the previous design, a paged listing of the workspace on every
tick: ceil(N / 50) x ticks per hour, plus the same churn. Prints a table, asserts nothing.
Usage: python -m bench.railway_budget
"""
from __future__ import annotations

import io
import math
import os
import shutil
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from bench.databases import isolated_environment, use_embedded_sqlite

SIZES = tuple(int(n) for n in os.environ.get("BENCH_RAILWAY_SIZES", "100,1000,5000").split(",") if n.strip())
CHURN_PER_HOUR = 0.01
HOUR_MS = 3_600_000
BUDGET = 10_000
WORKSPACE = "ws-bench"


def _prepare_environment() -> Path:
    """Everything Django reads at start-up; must run before django.setup()."""
    # In-process cache and rate limiter, fresh SQLite files: the numbers depend on nothing outside.
    var_dir = isolated_environment(var_prefix="convos-bench-railway-", provider="railway")
    use_embedded_sqlite()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.services_app.fake_railway
    return var_dir


class SimulatedClock:
    def __init__(self) -> None:
        from django.utils import timezone

        self.now = timezone.now()

    def __call__(self):
        return self.now

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


def _simulate(n: int, churn: float) -> dict[str, float]:
    """One simulated hour for a fleet of `n`; Railway calls by purpose."""
    import responses
    from django.conf import settings

    from services_app import health_checks, services
    from services_app.models import InstanceInfra
    from services_app.providers import get_provider
    from services_app.providers.railway import PROJECT_PREFIX
    from services_app.services import infra as infra_services
    from services_app.services import status
    from tests.services_app.fake_railway import FakeRailway

    token = uuid.uuid4().hex
    api = f"https://railway-bench-{uuid.uuid4().hex[:8]}.test/graphql/v2"  # a fresh client and sweep schedule
    settings.RAILWAY_API_URL = api
    settings.RAILWAY_API_TOKENS = [token]
    settings.RAILWAY_WORKSPACE_ID = WORKSPACE
    settings.RAILWAY_RATE_LIMIT_RPS = 1e9  # simulated time: the limiter must not sleep for real
    settings.RAILWAY_PROJECT_CREATE_INTERVAL_S = 0
    tick_ms = settings.TICK_INTERVAL_MS
    ticks = HOUR_MS // tick_ms
    clock = SimulatedClock()
    status._now = clock
    health_checks.check_batch = lambda urls, **_: [True] * len(urls)  # an idle fleet: everyone answers

    InstanceInfra.objects.using("services").all().delete()
    counts = {"status": 0, "full_sweeps": 0, "sweep_calls": 0, "on_demand_calls": 0, "create": 0, "destroy": 0, "creations": 0}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeRailway(api, tokens=[token], workspace_id=WORKSPACE).install(rsps)
        rows = []
        for i in range(n):
            project = fake.seed_project(name=f"{PROJECT_PREFIX}bench{i:07d}", workspace_id=WORKSPACE)
            service = fake.service_of(project["id"])
            rows.append(InstanceInfra(
                instance_id=f"bench{i:07d}", provider="railway", railway_project_id=project["id"], railway_service_id=service["id"],
                railway_environment_id=service["environmentId"], url=f"https://{service['domains'][0]}", deploy_status="SUCCESS",
                secret_nonce="n", instance_services_token_hash=uuid.uuid4().hex,
            ))
        InstanceInfra.objects.using("services").bulk_create(rows, batch_size=1000)
        InstanceInfra.objects.using("services").update(updated_at=clock.now - timedelta(hours=1))
        live = [r.instance_id for r in rows]
        provider = get_provider("railway")

        replacements = round(n * churn)
        churn_ticks = {int(k * ticks / replacements) for k in range(replacements)} if replacements else set()
        seq = n
        for tick in range(ticks):
            if tick in churn_ticks:
                # Destroy the oldest instance and create a new one, through the real provider.
                gone = live.pop(0)
                before = fake.requests
                provider.destroy(infra_services.infra_ref(InstanceInfra.objects.using("services").get(instance_id=gone)))
                InstanceInfra.objects.using("services").filter(instance_id=gone).delete()
                counts["destroy"] += fake.requests - before
                instance_id = f"bench{seq:07d}"
                seq += 1
                before = fake.requests
                ref = provider.create(instance_id=instance_id, variables={"INSTANCE_ID": instance_id})
                counts["create"] += fake.requests - before
                counts["creations"] += 1
                InstanceInfra.objects.using("services").create(
                    instance_id=instance_id, provider="railway", url=ref.url, railway_project_id=ref.railway_project_id,
                    railway_service_id=ref.railway_service_id, railway_environment_id=ref.railway_environment_id,
                    secret_nonce="n", instance_services_token_hash=uuid.uuid4().hex,
                )
                InstanceInfra.objects.using("services").filter(instance_id=instance_id).update(updated_at=clock.now)
                live.append(instance_id)
            before, pages, lookups = fake.requests, fake.calls["projects"], fake.calls["project"]
            statuses = services.status_batch(instance_ids=live)
            counts["status"] += fake.requests - before
            counts["sweep_calls"] += fake.calls["projects"] - pages
            counts["full_sweeps"] += 1 if fake.calls["projects"] > pages else 0
            counts["on_demand_calls"] += fake.calls["project"] - lookups
            unhealthy = [i for i, s in statuses.items() if s["status"] != "healthy"]
            if len(unhealthy) > 0 and tick == ticks - 1:
                print(f"    note: {len(unhealthy)} instance(s) not healthy at the last tick", file=sys.stderr)
            clock.advance(tick_ms)
    counts["ticks"] = ticks
    return counts


def main() -> None:
    var_dir = _prepare_environment()
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate_all", verbosity=0, stdout=io.StringIO())
        print(f"Railway budget benchmark: one simulated hour, a status batch every {settings.TICK_INTERVAL_MS / 1000:g} s, "
              f"full sweep every {settings.RAILWAY_FULL_SYNC_MS / 1000:g} s, recent change {settings.RAILWAY_RECENT_CHANGE_MS / 1000:g} s, "
              f"{settings.RAILWAY_STATUS_ALIASES_PER_CALL} projects per lookup call, {settings.RAILWAY_PROJECTS_PAGE_SIZE} per listing page; "
              f"budget {BUDGET:,} calls/hour")
        header = (f"  {'N':>5} {'fleet':>9} {'sweeps':>6} {'sweep calls':>11} {'lookups':>7} {'creates':>7} {'create+destroy':>14} "
                  f"{'total/h':>8} {'% budget':>8} {'before/h':>9} {'before %':>8} {'wall s':>6}")
        print(header)
        for n in SIZES:
            for label, churn in (("idle", 0.0), ("churn 1%", CHURN_PER_HOUR)):
                started = time.perf_counter()
                c = _simulate(n, churn)
                wall = time.perf_counter() - started
                lifecycle = c["create"] + c["destroy"]
                total = c["status"] + lifecycle
                before = math.ceil(n / settings.RAILWAY_PROJECTS_PAGE_SIZE) * c["ticks"] + lifecycle
                print(f"  {n:>5} {label:>9} {c['full_sweeps']:>6} {c['sweep_calls']:>11} {c['on_demand_calls']:>7} {c['creations']:>7} "
                      f"{lifecycle:>14} {total:>8} {100 * total / BUDGET:>7.1f}% {before:>9} {100 * before / BUDGET:>7.1f}% {wall:>6.1f}")
        print("  (sweeps: full paged listings of the workspace; lookups: aliased project(id:) calls for instances a health check\n"
              "   did not vouch for (new, recently changed, failing, not running); create+destroy: the churn's own calls, each\n"
              "   creation through the real RailwayProvider.create; before: a full listing every tick, plus the same churn)")
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
