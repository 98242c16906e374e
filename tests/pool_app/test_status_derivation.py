"""Every combination of deploy status, health, age and claimed, against the reference's rules."""
from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest

from pool_app.models import InstanceStatus
from pool_app.status_derivation import derive_status
from services_app.facade import deploy_states

TIMEOUT = timedelta(minutes=15)
YOUNG, OLD = timedelta(minutes=1), timedelta(minutes=16)
RAILWAY_SCHEMA = Path(__file__).resolve().parents[2] / "contracts" / "railway" / "schema.json"

# Railway's DeploymentStatus values (contracts/railway), grouped as reference section 2 reads them,
# plus None for "services knows no deploy status".
SLEEPING = ["SLEEPING"]
FAILED = ["FAILED", "CRASHED", "REMOVED", "REMOVING", "SKIPPED"]
DEPLOYING = ["QUEUED", "WAITING", "BUILDING", "DEPLOYING", "INITIALIZING", "NEEDS_APPROVAL"]
SUCCESS = ["SUCCESS"]
UNKNOWN = [None]
ALL = SLEEPING + FAILED + DEPLOYING + SUCCESS + UNKNOWN


def expected(deploy: str | None, healthy: bool, old: bool, claimed: bool) -> str:
    """The reference's table, written out case by case (not by calling the code under test)."""
    if deploy in SLEEPING:
        return "sleeping"  # rule 1, whatever the rest: sleep is never death
    if deploy in FAILED:
        return "crashed" if claimed else "dead"  # rule 2
    if claimed:
        return "claimed"  # rules 3-5: a claimed instance stays claimed (never stuck, never dead)
    if deploy in SUCCESS and healthy:
        return "idle"  # rule 4
    return "stuck" if old else "starting"  # rules 3 and 5 (a deploy stuck in the queue too)


CASES = list(itertools.product(ALL, [True, False], [False, True], [False, True]))


def derive(deploy: str | None, *, healthy: bool, unhealthy_for: timedelta, claimed: bool) -> str:
    """The pool's status for a provider's deploy status and health check, the way the tick gets
    it: services reduces the two to one coarse state, and the pool derives its status from that."""
    return derive_status(state=deploy_states.coarse_state(deploy, healthy), unhealthy_for=unhealthy_for, claimed=claimed,
                         stuck_timeout=TIMEOUT)


def test_it_the_table_covers_every_combination():
    # Every value of Railway's DeploymentStatus enum, as the schema the pool is checked against
    # declares it: a status Railway adds fails here until the table says how the pool reads it.
    schema = json.loads(RAILWAY_SCHEMA.read_text())["data"]["__schema"]["types"]
    (enum,) = [t for t in schema if t["name"] == "DeploymentStatus"]
    assert set(ALL) - {None} == {value["name"] for value in enum["enumValues"]}
    # Every combination derives a status an Instance row can hold, and together they reach every
    # status the observation may set (none of those owned by a claim, a reset or a destroy).
    derived = {derive(deploy, healthy=healthy, unhealthy_for=OLD if old else YOUNG, claimed=claimed)
               for deploy, healthy, old, claimed in CASES}
    assert derived <= set(InstanceStatus.values)
    assert derived == {"sleeping", "dead", "crashed", "claimed", "idle", "stuck", "starting"}


@pytest.mark.parametrize("deploy,healthy,old,claimed", CASES)
def test_it_derives_the_reference_status(deploy, healthy, old, claimed):
    got = derive(deploy, healthy=healthy, unhealthy_for=OLD if old else YOUNG, claimed=claimed)
    assert got == expected(deploy, healthy, old, claimed)


@pytest.mark.parametrize("claimed", [False, True])
def test_it_never_calls_a_sleeping_instance_dead_however_long_it_sleeps(claimed):
    got = derive("SLEEPING", healthy=False, unhealthy_for=timedelta(days=30), claimed=claimed)
    assert got == "sleeping"


def test_it_turns_stuck_only_after_the_timeout():
    at = lambda age: derive("SUCCESS", healthy=False, unhealthy_for=age, claimed=False)
    assert at(TIMEOUT) == "starting"
    assert at(TIMEOUT + timedelta(seconds=1)) == "stuck"


RECONCILE_CASES = [
    # current, recorded, reported -> expected status
    ("pending_acceptance", "c1", {"conversationId": "c1", "pending": True}, "pending_acceptance"),
    ("pending_acceptance", "c1", {"conversationId": "c1", "pending": False}, "claimed"),
    ("pending_acceptance", "", {"conversationId": None, "pending": False}, "tainted"),  # the join failed or was lost
    ("pending_acceptance", "", {"conversationId": None}, "pending_acceptance"),  # an answer without `pending` decides nothing
    ("claimed", "c1", {"conversationId": "c1", "pending": False}, "claimed"),
    ("claimed", "c1", {"conversationId": "c2", "pending": False}, "tainted"),
    ("claimed", "c1", {"conversationId": None, "pending": False}, "tainted"),
    ("tainted", "c1", {"conversationId": "c1", "pending": False}, "claimed"),
    ("tainted", "c1", {"conversationId": "c3", "pending": False}, "tainted"),
    ("claimed", "", {"conversationId": "c9", "pending": False}, "claimed"),  # nothing recorded to compare
]


@pytest.mark.parametrize("current,recorded,reported,expected", RECONCILE_CASES)
def test_it_reconciles_a_claim_with_what_the_instance_reports(current, recorded, reported, expected):
    from pool_app.status_derivation import reconcile_claim

    assert reconcile_claim(current=current, recorded_conversation=recorded, reported=reported)[0] == expected
