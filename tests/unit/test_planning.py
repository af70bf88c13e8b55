"""The planner's grace, gone and duplicate rules, driven directly over generated pods and clocks."""

from __future__ import annotations

import dataclasses

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
    got = planning.plan(records, table, {}, grace=GRACE, now=0.0)
    assert set(got.pods) == {r.ordinal for r in records}
    assert got.gone == frozenset(table) - {r.ordinal for r in records}
    assert set(got.instances) == set(got.pods)
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
        else:  # NotReady: a suspect within its grace only if it was Ready (here: the table says so)
            was_ready = rec.ordinal in table and table[rec.ordinal].alive
            assert (rec.ordinal in got.suspects) == was_ready
            assert planned.routable == (was_ready and rec.routing is not RoutingState.SHUTDOWN)
            assert not planned.available


@given(st.floats(0, 3 * GRACE))
def test_a_not_ready_pod_keeps_its_users_for_the_grace_then_becomes_unroutable(later):
    ready = planning.plan([pod(2)], {}, {}, grace=GRACE, now=90.0)
    # Only what is kept in Redis is carried from one run to the next, as after a restart.
    first = planning.plan([pod(2, ready=False)], ready.pods, ready.instances, grace=GRACE, now=100.0)
    assert first.suspects == {2}
    assert first.pods[2].routable
    assert not first.pods[2].available
    again = planning.plan([pod(2, ready=False)], first.pods, first.instances, grace=GRACE, now=100 + later)
    assert (2 in again.suspects) == (later < GRACE)
    assert again.pods[2].routable == (later < GRACE)
    back = planning.plan([pod(2)], again.pods, again.instances, grace=GRACE, now=100 + later)
    assert back.pods[2].available
    assert back.instances == {2: "uid-2,r"}


def test_a_pod_never_seen_ready_gets_no_grace():
    """Issue 11 point 14: a new pod still starting was written routable (DenyNewCall)."""
    new = planning.plan([pod(2, ready=False)], {}, {}, grace=GRACE, now=100.0)
    assert not new.pods[2].routable
    assert new.suspects == frozenset()
    # Nor does a new pod (another uid) at the index of one that was Ready.
    replaced = planning.plan(
        [pod(2, ready=False, uid="new")], {2: PodState(2)}, {2: "old,r"}, grace=GRACE, now=100.0
    )
    assert not replaced.pods[2].routable
    assert replaced.instances == {2: "new,n"}
    # Once Ready, a flap gets the grace.
    up = planning.plan([pod(2, uid="new")], replaced.pods, replaced.instances, grace=GRACE, now=101.0)
    down = planning.plan([pod(2, ready=False, uid="new")], up.pods, up.instances, grace=GRACE, now=102.0)
    assert down.suspects == {2}


def test_the_live_pod_wins_over_the_terminating_one_with_the_same_ordinal():
    old, new = pod(1, terminating=True, uid="old"), pod(1, uid="new")
    for records in ([old, new], [new, old]):
        got = planning.plan(records, {}, {}, grace=GRACE, now=0.0)
        assert got.pods[1] == PodState(1)
        assert got.uids == {1: "new"}


@given(st.permutations([0, 1]))
def test_of_two_live_pods_with_one_ordinal_the_newer_wins_in_any_order(order):
    """Two live records at one ordinal: a stale index kept a pod deleted while the replica was
    paused; the StatefulSet made the newer one after the older was gone."""
    old = dataclasses.replace(pod(2, uid="old", ready=False), created="2026-11-28T20:00:00Z")
    new = dataclasses.replace(pod(2, uid="new"), created="2026-11-28T20:00:05Z")
    got = planning.plan([(old, new)[i] for i in order], {}, {}, grace=GRACE, now=0.0)
    assert got.uids == {2: "new"}
    assert got.pods[2].routable


def test_instances_are_kept_only_for_pods_kubernetes_has():
    got = planning.plan([pod(3, ready=False)], {}, {3: "uid-3,1000", 5: "uid-5,r"}, grace=GRACE, now=5.0)
    assert got.instances == {3: "uid-3,1000"}
    assert got.suspects == {3}  # NotReady since 1 s, within its grace


def test_unroutable_reasons_name_what_happened():
    assert planning.unroutable_reason(None, GRACE) == "deleted"
    assert planning.unroutable_reason(PodState(0, ready=False, terminating=True), GRACE) == "terminating"
    assert planning.unroutable_reason(PodState(0, routing=RoutingState.SHUTDOWN), GRACE) == "shutdown"
    assert planning.unroutable_reason(PodState(0, ready=False), 2.5) == "not ready for 2.5s"


@given(st.integers(0, 3 * int(GRACE)), st.integers(0, 3 * int(GRACE)))
def test_a_pod_that_turned_not_ready_while_the_operator_was_down_gets_only_the_rest_of_its_grace(
    down_for, later
):
    """The operator last wrote the pod Ready; it turned NotReady ``down_for`` seconds before the
    operator's next run (the Ready condition's lastTransitionTime says when, in whole seconds:
    the end of that second counts): its grace began then, not when the operator came back."""
    ready = planning.plan([pod(2)], {}, {}, grace=GRACE, now=90.0)
    turned = dataclasses.replace(pod(2, ready=False), not_ready_since=100.0)
    back = 100.0 + down_for
    since = min(back, 101.0)
    first = planning.plan([turned], ready.pods, ready.instances, grace=GRACE, now=back)
    assert first.instances == {2: f"uid-2,{round(since * 1000)}"}
    assert (2 in first.suspects) == (back - since < GRACE)
    again = planning.plan([turned], first.pods, first.instances, grace=GRACE, now=back + later)
    assert (2 in again.suspects) == (back + later - since < GRACE)
    # A transition time in the future (a skewed clock) grants no more than a grace from now.
    skewed = dataclasses.replace(turned, not_ready_since=back + 60)
    seen = planning.plan([skewed], ready.pods, ready.instances, grace=GRACE, now=back)
    assert seen.suspects == {2}
    assert 2 not in planning.plan([skewed], seen.pods, seen.instances, grace=GRACE, now=back + GRACE).suspects
