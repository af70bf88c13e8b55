"""The StatefulRoute status, built directly from generated snapshots and pods."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stateful_route.controller.pods import PodRecord
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.controller.status import build_status, pod_state
from stateful_route.core.state import PodPhase, PodState, RouteSnapshot, RoutingState
from stateful_route.store.eviction import Eviction

ROUTE = RouteRef(
    "games", "room", "uid", RouteSpec.parse("room", {"statefulSetName": "game", "service": "lobby"})
)


@st.composite
def snapshots(draw: st.DrawFn) -> RouteSnapshot:
    indices = draw(st.sets(st.integers(0, 7), max_size=8))
    pods = {
        i: PodState(i, draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from(list(RoutingState))))
        for i in indices
    }
    links = {i: draw(st.integers(0, 1000)) for i in indices}
    available = frozenset(i for i, p in pods.items() if p.available and draw(st.booleans()))
    best = min(available) if available else None
    return RouteSnapshot(pods, links, available, best)


@given(snapshots(), st.sets(st.integers(0, 9), max_size=10))
def test_counts_and_the_ready_condition_follow_the_snapshot(snapshot, indexed):
    records = [PodRecord(f"game-{i}", f"u{i}", i, True, False, RoutingState.READY) for i in indexed]
    status = build_status(ROUTE, records, snapshot, None)
    shown = [p["index"] for p in status["pods"]]
    assert shown == sorted(set(snapshot.pods) | indexed)
    routable = len(snapshot.routable)
    assert (status["routablePods"], status["availablePods"]) == (routable, len(snapshot.available))
    assert status["summary"] == f"{routable}/{len(shown)}"
    assert status["links"] == sum(snapshot.links.values())
    assert status["bestPod"] == snapshot.best
    assert status["service"] == "lobby"
    (ready,) = status["conditions"]
    assert ready["status"] == ("True" if snapshot.available else "False")
    for row in status["pods"]:
        state = snapshot.pods.get(row["index"])
        assert row["routable"] == bool(state and state.routable)
        assert row.get("name") == (f"game-{row['index']}" if row["index"] in indexed else None)
        assert None not in row.values()  # a merge patch would drop a null: left out instead
        assert row["state"] == pod_state(state, None)
    assert "lastEviction" not in status


def test_the_live_pod_names_a_row_and_the_last_eviction_is_shown():
    snapshot = RouteSnapshot({1: PodState(1)}, {1: 3}, frozenset({1}), 1)
    records = [
        PodRecord("game-1", "new", 1, True, False, RoutingState.READY),
        PodRecord("game-1-old", "old", 1, False, True, RoutingState.READY),
        PodRecord("game-2", "gone", 2, False, True, RoutingState.READY),  # not in the table any more
    ]
    eviction = Eviction(2, "terminating", removed=5, rebound=4, at="2026-11-28T12:00:00Z")
    status = build_status(ROUTE, records, snapshot, eviction)
    assert [(p["index"], p["name"], p["state"]) for p in status["pods"]] == [
        (1, "game-1", "Ready"),
        (2, "game-2", "gone"),
    ]
    # Unknown is absent, not null (the API server would drop a null inside pods[]).
    assert "routingState" not in status["pods"][1]
    assert "terminatingUntil" not in status["pods"][0]
    assert status["lastEviction"] == {
        "pod": 2, "reason": "terminating", "links": 5, "rebound": 4, "time": "2026-11-28T12:00:00Z",
        "message": "evicted 5 links from pod 2: terminating; rebound 4",
    }  # fmt: skip


def test_pod_state_names_phases_only_for_routable_pods():
    assert pod_state(None, None) == "gone"
    assert pod_state(PodState(0, ready=False), None) == "NotReady"
    assert pod_state(PodState(0, routing=RoutingState.DENY_NEW_CALL), PodPhase()) == "DenyNewCall"
    assert pod_state(PodState(0), PodPhase(outdated=True)) == "Outdated"
    assert pod_state(PodState(0), PodPhase(terminating_until=1.0)) == "Terminating"
    assert pod_state(PodState(0, ready=False), PodPhase(outdated=True)) == "NotReady"
