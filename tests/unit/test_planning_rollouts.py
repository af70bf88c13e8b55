"""The planner's termination policy and rollout rules, over generated pods and StatefulSets."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateful_route.controller import planning, rollouts
from stateful_route.controller.pods import PodRecord, record
from stateful_route.core.state import RoutingState

NOW = 1_800_000_000.0

pods_st = st.lists(
    st.builds(
        lambda i, ready, term, routing, rev, ahead: PodRecord(
            name=f"game-{i}",
            uid=f"uid-{i}",
            ordinal=i,
            ready=ready,
            terminating=term,
            routing=routing,
            deadline=NOW + ahead if term else None,
            revision=rev,
        ),
        st.integers(0, 7),
        st.booleans(),
        st.booleans(),
        st.sampled_from(list(RoutingState)),
        st.sampled_from(["old", "new"]),
        st.sampled_from([-5.0, 30.0]),
    ),
    max_size=8,
    unique_by=lambda r: r.ordinal,
)
sts_st = st.builds(
    rollouts.StatefulSetRecord,
    name=st.just("game"),
    replicas=st.integers(0, 8),
    partition=st.integers(0, 8),
    current_revision=st.sampled_from(["old", "new"]),
    update_revision=st.sampled_from(["old", "new", None]),
)


def planned(records, sts=None, blocked=frozenset(), handoff=True):
    return planning.plan(
        records, {}, {}, grace=10, now=NOW, handoff=handoff,
        stateful_set=sts, blocked=blocked,
    )  # fmt: skip


@given(pods_st, sts_st, st.frozensets(st.integers(0, 7)))
def test_outdated_pods_are_held_back_only_while_a_pod_that_stays_takes_new_users(records, sts, blocked):
    without = planned(records, None)
    got = planned(records, sts, blocked)
    old = {r.ordinal for r in records if sts.outdated(r)}
    assert got.outdated == old
    staying = any(p.available and i not in blocked for i, p in without.pods.items() if i not in old)
    for i, pod in got.pods.items():
        if i in old and staying:
            assert not pod.available
            assert pod.routable == without.pods[i].routable  # keeps its users
        else:
            assert pod == without.pods[i]
    # Held (placement's fallback when no pod is available): exactly the pods kept off new users
    # by the hold-back alone, never one NotReady in its grace, terminating or drained.
    assert got.held_back == staying
    assert got.held == {i for i in old if staying and without.pods[i].available}


@given(pods_st, st.booleans())
def test_a_terminating_ready_pod_is_routable_not_available_until_its_deadline_under_handoff(records, handoff):
    got = planned(records, handoff=handoff)
    for rec in records:
        pod = got.pods[rec.ordinal]
        if not rec.terminating:
            continue
        held = handoff and rec.ready and rec.deadline is not None and rec.deadline > NOW
        assert pod.routable == (held and rec.routing is not RoutingState.SHUTDOWN)
        assert not pod.available
        assert (got.phases.get(rec.ordinal) is not None) == held


def test_statefulset_and_pod_bodies_are_read_with_kubernetes_defaults():
    sts = rollouts.record({"metadata": {"name": "game"}, "spec": {}, "status": {}})
    assert (sts.replicas, sts.partition, sts.rolling) == (1, 0, False)
    sts = rollouts.record({
        "metadata": {"name": "game"},
        "spec": {"replicas": 6, "updateStrategy": {"rollingUpdate": {"partition": 2}}},
        "status": {"currentRevision": "game-a", "updateRevision": "game-b"},
    })  # fmt: skip
    assert (sts.replicas, sts.partition, sts.rolling) == (6, 2, True)
    body = {
        "metadata": {
            "name": "game-4", "uid": "u", "deletionTimestamp": "2026-11-28T19:00:00Z",
            "labels": {"controller-revision-hash": "game-a"},
            "ownerReferences": [{"kind": "StatefulSet", "name": "game"}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip
    pod = record(body)
    assert pod is not None
    assert (pod.revision, pod.deadline) == ("game-a", 1795892400.0)
    assert sts.outdated(pod)
    assert not sts.outdated(PodRecord("game-1", "v", 1, True, False, RoutingState.READY))


def test_a_rollback_mid_rollout_outdates_the_pods_already_updated():
    """Rolled back mid-rollout, the real controller makes the old revision the update revision
    again, equal to the current one, and replaces the pods it had already updated, highest
    first (seen on kube-controller-manager v1.37.2). Those are outdated, though the status alone
    no longer shows a rolling update: nobody new goes to a pod about to be replaced."""
    sts = rollouts.StatefulSetRecord("game", replicas=4, current_revision="old", update_revision="old")
    assert not sts.rolling
    records = [
        PodRecord(f"game-{i}", f"uid-{i}", i, ready=True, terminating=False, routing=RoutingState.READY,
                  revision="old" if i < 2 else "new")
        for i in range(4)
    ]  # fmt: skip
    got = planned(records, sts)
    assert got.outdated == {2, 3}
    assert got.held_back
    assert {i for i, pod in got.pods.items() if pod.available} == {0, 1}
    # A pod without the revision label: only the status can say, and it says no rollout.
    unlabelled = planned([dataclasses.replace(r, revision=None) for r in records], sts)
    assert unlabelled.outdated == frozenset()


def test_a_stateful_sets_selector_becomes_a_label_selector_for_its_own_pods():
    """The confirming list and the census ask for these pods only, not the namespace's."""
    selector = {
        "matchLabels": {"app": "game", "tier": "a"},
        "matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["x", "y"]},
            {"key": "canary", "operator": "NotIn", "values": ["yes"]},
            {"key": "owner", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert rollouts.label_selector(selector) == (
        "app=game,tier=a,zone in (x,y),canary notin (yes),owner,!legacy,statefulset.kubernetes.io/pod-name"
    )
    sts = rollouts.record({"metadata": {"name": "game"}, "spec": {"selector": {"matchLabels": {"app": "g"}}}})
    assert sts.selector == "app=g,statefulset.kubernetes.io/pod-name"


@pytest.mark.parametrize(
    "selector",
    [
        None,
        "app=game",
        {},
        {"matchLabels": {}},
        {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["x"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": []}]},
        {"matchExpressions": [{"operator": "Exists"}]},
    ],
)
def test_a_selector_that_cannot_be_written_lists_every_stateful_set_pod_as_before(selector):
    assert rollouts.label_selector(selector) is None
