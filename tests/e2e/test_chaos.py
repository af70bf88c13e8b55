"""A CI-sized chaos run (``make chaos`` runs 5 minutes): every kind of fault within about
30 seconds, every answer judged.

One defect the chaos run found is tolerated here, and only it: right after an operator
replica starts or stops (a takeover with peering), a pod is written unroutable for a few
milliseconds and its users are rebound while gateways still answer the old pod, so a user is
briefly on two routable pods (RELIABILITY.md). Such moves are counted apart; every other
violation fails this test, and the count is printed.
"""

from __future__ import annotations

import pytest

from bench.chaos import chaos

pytestmark = [
    pytest.mark.sentinel,
    pytest.mark.slow,
    # Servers and connections are killed mid-call here; redis-py 8.1 then leaves some connection
    # objects to the garbage collector, which warns. Only this test tolerates that.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

SEED = 20261128


async def test_a_short_chaos_run_has_no_violations_but_the_known_takeover_moves():
    report = await chaos(duration=30, seed=SEED, users=5_000)
    print(
        f"\nchaos seed {SEED}: {dict(report.faults)}; {report.findings.count} answers; "
        f"{len(report.violations)} violations, {report.takeover_moves} of them moves after an operator "
        f"start/stop; first: {report.violations[:3]}; injector: {report.fault_errors[:3]}"
    )
    assert len(report.violations) == report.takeover_moves
    assert report.fault_errors == []
    assert report.converged is not None
    assert report.worst <= 1.0
    assert report.findings.unexpected == []
    assert report.findings.count > 10_000
    assert sum(report.faults.values()) >= 15
    assert len(report.faults) >= 8  # most kinds, mixed
