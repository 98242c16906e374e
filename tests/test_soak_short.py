"""The soak (bench/soak.py) in short: ~25 s of claims, operator actions and ticks under injected
faults, on PostgreSQL; then the same invariants `make soak` checks must hold."""
from __future__ import annotations

import pytest

from bench import soak
from tests.conftest import ALL_DATABASES

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]


def test_it_keeps_the_invariants_through_a_short_soak(postgres_only, capsys):
    result = soak.run(seconds=25, tick_every_s=1.0, fault_every_s=0.7, fault_rate=0.15)
    with capsys.disabled():
        print("\n" + "\n".join(result.lines))
    assert result.failures == []
    # It did soak: claims went through, faults were injected, the tick ran through them.
    assert result.claims_ok >= 10 and result.faults_injected >= 10 and result.ticks >= 15
