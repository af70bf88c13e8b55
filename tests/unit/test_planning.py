"""The planner's grace, gone and duplicate rules, driven directly over generated pods and clocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stateful_route.controller import planning
from stateful_route.controller.pods import PodRecord
from stateful_route.core.state import PodState, RoutingState

GRACE = 10.0

records_st = st.lists(
    st.builds(
        lambda i, ready, term, routing: PodRecord(f"game-{i}", f"uid-{i}", i, ready, term, routing),
        st.integers(0, 7),
        st.booleans(),
        st.booleans(),
        st.sampled_from(list(RoutingState)),
    ),
    max_size=8,
    unique_by=lambda r: r.ordinal,
)
# What the route table held before: which pods, and whether each was ready.
table_st = st.dictionaries(st.integers(0, 9), st.booleans()).map(
    lambda ready: {i: PodState(i, ready=r) for i, r in ready.items()}
)


def pod(i: int, *, ready: bool = True, terminating: bool = False, uid: str | None = None) -> PodRecord:
    return PodRecord(f"game-{i}", uid or f"uid-{i}", i, ready, terminating, RoutingState.READY)


@given(records_st, table_st)
def test_every_pod_kubernetes_has_is_planned_and_the_rest_of_the_table_is_gone(records, table):
    got = planning.plan(records, table, grace=GRACE, not_ready_since={}, now=0.0)
    assert set(got.pods) == {r.ordinal for r in records}
    assert got.gone == frozenset(table) - {r.ordinal for r in records}
    fenced = {p.index: p for p in got.with_gone_fenced()}
    assert all(not fenced[i].routable for i in got.gone)
    for rec in records:
        planned = got.pods[rec.ordinal]
        if rec.ready or rec.terminating:  # copied as Kubernetes says
            assert (planned.ready, planned.terminating, planned.routing) == (
                rec.ready,
                rec.terminating,
                rec.routing,
            )
        else:  # NotReady: a suspect within its grace, unless the table already had it NotReady
            was_not_ready = rec.ordinal in table and not table[rec.ordinal].ready
            assert (rec.ordinal in got.suspects) == (not was_not_ready)
            assert planned.routable == (not was_not_ready and rec.routing is not RoutingState.SHUTDOWN)
            assert not planned.available


@given(st.floats(0, 3 * GRACE))
def test_a_not_ready_pod_keeps_its_users_for_the_grace_then_becomes_unroutable(later):
    since: dict[str, float] = {}
    first = planning.plan([pod(2, ready=False)], {}, grace=GRACE, not_ready_since=since, now=100.0)
    assert first.suspects == {2}
    assert first.pods[2].routable
    assert not first.pods[2].available
    again = planning.plan(
        [pod(2, ready=False)], first.pods, grace=GRACE, not_ready_since=since, now=100 + later
    )
    assert (2 in again.suspects) == (later < GRACE)
    assert again.pods[2].routable == (later < GRACE)
    back = planning.plan([pod(2)], again.pods, grace=GRACE, not_ready_since=since, now=100 + later)
    assert back.pods[2].available
    assert since == {}


def test_the_live_pod_wins_over_the_terminating_one_with_the_same_ordinal():
    old, new = pod(1, terminating=True, uid="old"), pod(1, uid="new")
    for records in ([old, new], [new, old]):
        got = planning.plan(records, {}, grace=GRACE, not_ready_since={}, now=0.0)
        assert got.pods[1] == PodState(1)


def test_not_ready_since_forgets_pods_that_left():
    since = {"uid-3": 1.0, "someone-else": 2.0}
    planning.plan([pod(3, ready=False)], {}, grace=GRACE, not_ready_since=since, now=5.0)
    assert since == {"uid-3": 1.0}


def test_unroutable_reasons_name_what_happened():
    assert planning.unroutable_reason(None, GRACE) == "deleted"
    assert planning.unroutable_reason(PodState(0, ready=False, terminating=True), GRACE) == "terminating"
    assert planning.unroutable_reason(PodState(0, routing=RoutingState.SHUTDOWN), GRACE) == "shutdown"
    assert planning.unroutable_reason(PodState(0, ready=False), 2.5) == "not ready for 2.5s"
