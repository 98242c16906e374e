"""Every process can die at any line (issue 11, item 2): real processes SIGKILLed mid-call, and
PostgreSQL cut under a running web tier; afterwards the tick leaves rows and the fleet consistent.

The processes share one fake fleet process (`manage.py fake_fleet`), whose FAKE_*_DELAY_MS knobs
hold a create, a destroy or a provision open long enough to kill the caller inside it. The test
process then ticks against the same fleet and the same databases.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import pool_tick
from services_app.models import InstanceInfra
from tests.conftest import ALL_DATABASES, wait_until
from tests.faults import fake_fleet
from tests.faults import ROOT, CuttableProxy, child_env, child_pids, database_env, fleet_ids, gunicorn, stop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]
TRANSIENT = [S.CLAIMING, S.RESETTING, S.DESTROYING]


@pytest.fixture
def on_fleet(settings, postgres_only):
    """Point this process at a fleet: `with on_fleet(FAKE_..._DELAY_MS="...") as url`."""
    settings.INFRA_PROVIDER = "fake"
    settings.POOL_MIN_IDLE = 0
    settings.ORPHAN_SWEEP_MS = 0

    def start(**knobs: str):
        fleet = fake_fleet(**knobs)
        url = fleet.__enter__()
        settings.FAKE_FLEET_URL = url
        started.append(fleet)
        return url

    started: list = []
    yield start
    for fleet in started:
        fleet.__exit__(None, None, None)


def _fill(settings, n: int) -> list[str]:
    settings.POOL_MIN_IDLE = n
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() >= n, timeout=30, interval=0.2, message=f"{n} idle")
    settings.POOL_MIN_IDLE = 0
    return list(Instance.objects.filter(status=S.IDLE).values_list("pk", flat=True))


def _assert_consistent(url: str) -> None:
    """No row stuck in a transient status, every live row has its services row and its fleet
    instance, and the fleet holds nothing no row records."""
    live = set(Instance.objects.exclude(status=S.DELETED).values_list("pk", flat=True))
    assert not Instance.objects.filter(status__in=TRANSIENT).exists()
    assert not Instance.objects.filter(status=S.STARTING, deploy_status="creating").exists()
    assert set(InstanceInfra.objects.values_list("instance_id", flat=True)) == live
    assert fleet_ids(url) == live


def _tick_process(**extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "tick"], cwd=ROOT, env=child_env(**extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_it_cleans_up_after_a_tick_killed_between_the_provider_create_and_its_record(on_fleet, settings):
    url = on_fleet(FAKE_CREATE_DELAY_MS="3000")
    ticker = _tick_process(INFRA_PROVIDER="fake", FAKE_FLEET_URL=url, POOL_MIN_IDLE="2", ORPHAN_SWEEP_MS="0")
    try:
        # The fleet made both; their creates have not answered, so services recorded nothing.
        wait_until(lambda: len(fleet_ids(url)) == 2, timeout=30, message="the fleet holding 2 instances")
        ticker.send_signal(signal.SIGKILL)
        ticker.wait(10)
    finally:
        stop(ticker)
    _recover_from_a_killed_creation(url, settings)


def test_it_cleans_up_after_a_celery_worker_killed_in_the_middle_of_a_tick(on_fleet, settings, tmp_path):
    """The production shape: beat's tick message, a prefork worker running it, the whole worker
    (master and child) SIGKILLed while the provider holds instances services never recorded."""
    url = on_fleet(FAKE_CREATE_DELAY_MS="3000")
    # A private filesystem broker: no other test run's worker can take this message.
    env = child_env(INFRA_PROVIDER="fake", FAKE_FLEET_URL=url, POOL_MIN_IDLE="2", ORPHAN_SWEEP_MS="0",
                    REDIS_URL="", CELERY_BROKER_URL="filesystem://", VAR_DIR=str(tmp_path))
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "convos", "worker", "--pool=prefork", "--concurrency=1",
                               "--loglevel=WARNING"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        sent = subprocess.run([sys.executable, "manage.py", "shell", "-c",
                               "from pool_app.tasks import pool_tick_task; pool_tick_task.delay()"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: len(fleet_ids(url)) == 2, timeout=60, message="the worker's tick holding 2 creations")
        assert len(child_pids(worker.pid)) >= 1  # the prefork child running the tick
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    _recover_from_a_killed_creation(url, settings)


def _recover_from_a_killed_creation(url: str, settings) -> None:
    """After a process died between the provider's create and services' record: the next ticks
    leave a creation in flight alone, then remove what the provider holds and the rows."""
    made = fleet_ids(url)
    assert len(made) == 2
    assert set(Instance.objects.filter(status=S.STARTING, deploy_status="creating").values_list("pk", flat=True)) == made
    assert not InstanceInfra.objects.exists()

    # Younger than POOL_CREATE_TIMEOUT_MS: a creation that may still be in flight is left alone.
    pool_tick()
    assert fleet_ids(url) == made and Instance.objects.filter(deploy_status="creating").count() == 2

    # The orphan sweep (ORPHAN_SWEEP_DELETE) removes what the provider holds with no services row...
    settings.ORPHAN_SWEEP_MS, settings.ORPHAN_GRACE_MS, settings.ORPHAN_SWEEP_DELETE = 1, 0, True
    report = pool_tick()
    assert report["steps"]["orphan_sweep"]["deleted"] == {"fake": 2}
    assert fleet_ids(url) == set()
    # ...and reconcile_creations gives up the rows of the creations that never finished.
    settings.POOL_CREATE_TIMEOUT_MS = 1
    time.sleep(0.01)
    report = pool_tick()
    assert report["steps"]["reconcile_creations"] == {"abandoned": 2, "failed": 0}
    assert set(Instance.objects.filter(status=S.DELETED).values_list("pk", flat=True)) == made
    _assert_consistent(url)

    # The pool works again on the same fleet.
    settings.POOL_CREATE_TIMEOUT_MS = 60_000
    _fill(settings, 1)
    _assert_consistent(url)


def test_it_finishes_a_destroy_killed_after_the_provider_delete(on_fleet, settings):
    url = on_fleet(FAKE_DESTROY_DELAY_MS="3000")
    (doomed,) = _fill(settings, 1)
    destroyer = subprocess.Popen([sys.executable, "manage.py", "destroy_instance", doomed], cwd=ROOT,
                                 env=child_env(INFRA_PROVIDER="fake", FAKE_FLEET_URL=url),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The fleet removed it; its answer is held, so neither the services row nor the pool row is closed.
        wait_until(lambda: doomed not in fleet_ids(url), timeout=20, message="the provider delete")
        destroyer.send_signal(signal.SIGKILL)
        destroyer.wait(10)
    finally:
        stop(destroyer)
    assert Instance.objects.get(pk=doomed).status == S.DESTROYING
    assert InstanceInfra.objects.filter(instance_id=doomed).exists()

    pool_tick()  # a destroy younger than the retry delay may still be running: left alone
    assert Instance.objects.get(pk=doomed).status == S.DESTROYING
    settings.POOL_DESTROY_RETRY_MS = 0
    report = pool_tick()
    assert report["steps"]["remove_dead"] == {"destroyed": 1, "failed": 0}
    assert Instance.objects.get(pk=doomed).status == S.DELETED
    _assert_consistent(url)


def _claim(base: str, key: str, name: str = "Doomed", timeout: float = 30) -> requests.Response | Exception:
    from django.conf import settings

    try:
        return requests.post(f"{base}/api/pool/claim", json={"agentName": name, "instructions": "x"}, timeout=timeout,
                             headers={"Authorization": f"Bearer {settings.POOL_API_KEY}", "Idempotency-Key": key})
    except requests.RequestException as exc:
        return exc


def test_it_recovers_a_claim_whose_gunicorn_worker_was_killed(on_fleet, settings):
    url = on_fleet(FAKE_PROVISION_DELAY_MS="3000")
    (instance,) = _fill(settings, 1)
    env = child_env(INFRA_PROVIDER="fake", FAKE_FLEET_URL=url, POOL_API_KEY=settings.POOL_API_KEY, CLAIM_TIMEOUT_MS="8000",
                    POOL_MIN_IDLE="0", POOL_REFILL_AFTER_CLAIM="false")
    key = secrets.token_hex(16)
    with gunicorn(env) as (base, master):
        (worker,) = child_pids(master.pid)
        answers: list = []
        client = threading.Thread(target=lambda: answers.append(_claim(base, key)))
        client.start()
        wait_until(lambda: Instance.objects.get(pk=instance).status == S.CLAIMING, timeout=20, message="claiming")
        os.kill(worker, signal.SIGKILL)  # the worker, not the master: it dies inside the provision
        client.join(30)
        (first,) = answers
        assert isinstance(first, Exception) or first.status_code >= 500, first

        # The master starts a new worker; the client retries with the same key. The key's claim is
        # older than CLAIM_TIMEOUT_MS by the time the retry takes it over, and the instance is
        # still `claiming` (nothing recovered it yet): 503, retry later. Never the doomed claim's instance twice.
        wait_until(lambda: [p for p in child_pids(master.pid) if p != worker], timeout=20, message="a new worker")
        retry = _claim(base, key)
        assert not isinstance(retry, Exception) and retry.status_code == 503, retry
        assert retry.json()["code"] == "no_idle_instance"

        settings.CLAIM_TIMEOUT_MS = 0
        report = pool_tick()
        assert report["steps"]["recover_stale_claims"]["idle"] == 1
        assert Instance.objects.get(pk=instance).status == S.IDLE

        answer = _claim(base, key)
        assert answer.status_code == 200 and answer.json()["instanceId"] == instance
        replay = _claim(base, key)
        assert replay.status_code == 200 and replay.json() == answer.json()
        other = _claim(base, secrets.token_hex(16), name="Other")
        assert other.status_code == 503  # the only instance is handed out once

    assert Instance.objects.get(pk=instance).status == S.CLAIMED
    assert not Instance.objects.filter(status__in=TRANSIENT).exists()
    transitions = list(InstanceEvent.objects.filter(instance_id=instance).order_by("id").values_list("to_status", "actor"))
    assert transitions[-5:] == [("claiming", "api"), ("resetting", "tick"), ("idle", "tick"), ("claiming", "api"), ("claimed", "api")]


def test_it_answers_503_while_postgresql_is_cut_and_recovers_without_a_restart(on_fleet, settings):
    url = on_fleet()
    ids = set(_fill(settings, 6))
    proxy = CuttableProxy(("127.0.0.1", int(settings.DATABASES["pool"]["PORT"] or 5432)))
    env = {**child_env(INFRA_PROVIDER="fake", FAKE_FLEET_URL=url, POOL_API_KEY=settings.POOL_API_KEY, POOL_MIN_IDLE="6",
                       POOL_REFILL_AFTER_CLAIM="false", ORPHAN_SWEEP_MS="0"),
           **database_env(port=proxy.port)}
    results: list[tuple[str, object]] = []
    phase = ["before"]
    stop_claims = threading.Event()
    try:
        with gunicorn(env) as (base, _master):
            def claimer() -> None:
                while not stop_claims.is_set():
                    results.append((phase[0], _claim(base, secrets.token_hex(16), timeout=20)))
                    time.sleep(0.3)

            thread = threading.Thread(target=claimer)
            thread.start()
            wait_until(lambda: len(results) >= 2, timeout=20, message="claims before the cut")
            phase[0] = "cut"
            proxy.cut()
            tick_during = subprocess.run([sys.executable, "manage.py", "tick"], cwd=ROOT, env=env, capture_output=True, timeout=40)
            wait_until(lambda: sum(1 for p, _ in results if p == "cut") >= 3, timeout=30, message="claims during the cut")
            healthz = requests.get(f"{base}/healthz", timeout=10)
            phase[0] = "restored"
            proxy.restore()
            wait_until(lambda: sum(1 for p, r in results if p == "restored" and getattr(r, "status_code", 0) == 200) >= 2,
                       timeout=30, message="claims after the restore")
            stop_claims.set()
            thread.join(30)
            tick_after = subprocess.run([sys.executable, "manage.py", "tick"], cwd=ROOT, env=env, capture_output=True, timeout=40)
    finally:
        stop_claims.set()
        proxy.close()

    assert tick_during.returncode != 0  # the tick cannot run without its database, and says so
    assert healthz.status_code == 503 and "pool" in healthz.text
    assert tick_after.returncode == 0 and b"Tick done" in tick_after.stdout, tick_after.stderr[-2000:]
    during = [r for p, r in results if p == "cut"]
    # A claim that started just before the cut may finish inside it; every other answer is a 503
    # or a dropped connection, never a wrong 200.
    assert all(isinstance(r, Exception) or r.status_code == 503 for r in during[1:]), [getattr(r, "status_code", r) for r in during]
    granted = [r.json() for _, r in results if not isinstance(r, Exception) and r.status_code == 200]
    handed = [a["instanceId"] for a in granted]
    assert len(handed) == len(set(handed)) >= 4  # no instance handed out twice
    for a in granted:  # each 200 is true: that instance is claimed with that conversation
        row = Instance.objects.get(pk=a["instanceId"])
        assert row.status == S.CLAIMED and row.conversation_id == a["conversationId"]
    settings.CLAIM_TIMEOUT_MS = 0
    pool_tick()
    assert not Instance.objects.filter(status__in=TRANSIENT).exists()
    assert set(handed) <= ids | set(Instance.objects.values_list("pk", flat=True))
