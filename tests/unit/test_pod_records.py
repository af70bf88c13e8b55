"""What the operator reads from a pod body, and the StatefulRoute spec: read directly, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateful_route import InvalidInput
from stateful_route.controller import pods
from stateful_route.controller.spec import Listed, Rebind, RouteSpec
from stateful_route.core.constants import DEFAULT_LINK_TTL, POD_INDEX_LABEL, ROUTING_ANNOTATION
from stateful_route.core.state import RoutingState

OWNED = [{"kind": "StatefulSet", "name": "game", "controller": True}]


def body(name: str = "game-3", **meta: Any) -> dict[str, Any]:
    status = meta.pop("status", {"conditions": [{"type": "Ready", "status": "True"}]})
    return {"metadata": {"name": name, "uid": "u-1", "ownerReferences": OWNED, **meta}, "status": status}


@given(st.integers(0, 10**6), st.one_of(st.none(), st.integers(0, 10**6)))
def test_the_ordinal_is_the_index_label_else_the_name_suffix(suffix, label):
    labels = {} if label is None else {POD_INDEX_LABEL: str(label)}
    assert pods.ordinal(body(f"game-{suffix}", labels=labels)) == (suffix if label is None else label)


@pytest.mark.parametrize("name", ["game", "game-", "game-x", "game-٣", "game-1x"])
def test_a_pod_without_a_readable_ordinal_is_not_routed_to(name):
    assert pods.ordinal(body(name)) is None
    assert pods.record(body(name)) is None


def test_only_pods_a_statefulset_controls_are_routed_to():
    assert pods.owner(body()) == "game"
    assert pods.record(body(ownerReferences=[{"kind": "ReplicaSet", "name": "x"}])) is None
    assert pods.record(body(ownerReferences=[{**OWNED[0], "controller": False}])) is None
    assert pods.record(body(ownerReferences=None)) is None


@pytest.mark.parametrize(
    ("annotation", "routing", "bad"),
    [
        (None, RoutingState.READY, None),
        ("denynewcall", RoutingState.DENY_NEW_CALL, None),
        (" Shutdown ", RoutingState.SHUTDOWN, None),
        ("Paused", RoutingState.READY, "Paused"),
    ],
)
def test_the_drain_annotation_is_read_and_a_bad_value_is_kept_for_the_warning(annotation, routing, bad):
    annotations = {} if annotation is None else {ROUTING_ANNOTATION: annotation}
    got = pods.record(body(annotations=annotations))
    assert got is not None
    assert (got.routing, got.bad_annotation) == (routing, bad)


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({"conditions": [{"type": "Ready", "status": "True"}]}, True),
        ({"conditions": [{"type": "Ready", "status": "False"}]}, False),
        ({"conditions": [{"type": "ContainersReady", "status": "True"}]}, False),
        ({}, False),
        (None, False),
    ],
)
def test_ready_is_the_ready_condition(status, ready):
    got = pods.record(body(status=status))
    assert got is not None
    assert got.ready is ready


def test_a_deletion_timestamp_makes_the_pod_terminating_with_a_deadline():
    got = pods.record(
        body(deletionTimestamp="2026-11-28T12:00:30Z", creationTimestamp="2026-11-28T11:00:00Z")
    )
    assert got is not None
    assert (got.terminating, got.deadline, got.created) == (True, 1795867230.0, "2026-11-28T11:00:00Z")
    unreadable = pods.record(body(deletionTimestamp="soon"))
    assert unreadable is not None
    assert unreadable.deadline == 0.0  # counts as passed: the pod may be killed any moment
    alive = pods.record(body())
    assert alive is not None
    assert alive.deadline is None


def test_a_spec_takes_the_crd_defaults():
    spec = RouteSpec.parse("room", {"statefulSetName": "game"})
    assert (spec.service, spec.link_ttl, spec.grace, spec.rebind) == (
        "room",
        DEFAULT_LINK_TTL,
        10,
        Rebind.LAZY,
    )
    assert (spec.max_links_per_pod, spec.keep_links_on_delete) == (0, False)
    assert spec.rollout_wait == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("statefulSetName", "Game"),
        ("service", ""),
        ("linkTTLSeconds", 0),
        ("linkTTLSeconds", True),
        ("linkTTLSeconds", 1.5),
        ("unroutableGraceSeconds", -1),
        ("maxLinksPerPod", "10"),
        ("keepLinksOnDelete", "yes"),
        ("rebind", "Later"),
        ("rolloutWaitSeconds", -1),
        ("rolloutWaitSeconds", 3601),
        ("rolloutWaitSeconds", 2.5),
    ],
)
def test_a_bad_spec_field_is_named(field, value):
    with pytest.raises(InvalidInput) as caught:
        RouteSpec.parse("room", {"statefulSetName": "game", field: value})
    assert caught.value.field == f"spec.{field}"


def test_a_not_ready_pod_says_since_when_from_its_ready_condition():
    turned = {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-28T12:00:00Z"}
    rec = pods.record(body(status={"conditions": [turned]}))
    assert rec is not None
    assert rec.not_ready_since == pods.timestamp("2026-11-28T12:00:00Z")
    ready = pods.record(body(status={"conditions": [{**turned, "status": "True"}]}))
    assert ready is not None
    assert ready.ready
    assert ready.not_ready_since is None
    unknown = pods.record(body(status={"conditions": [{"type": "Ready", "status": "False"}]}))
    assert unknown is not None
    assert unknown.not_ready_since is None


def test_a_list_of_routes_names_the_services_of_valid_routes_not_being_deleted():
    items = [
        {"metadata": {"name": "a", "uid": "1"}, "spec": {"statefulSetName": "game"}},
        {"metadata": {"name": "b", "uid": "2"}, "spec": {"statefulSetName": "game", "service": "lobby"}},
        {"metadata": {"name": "c", "uid": "3", "deletionTimestamp": "x"}, "spec": {"statefulSetName": "g"}},
        {"metadata": {"name": "d", "uid": "4"}, "spec": {"statefulSetName": "Not A Label"}},
    ]
    assert Listed.parse(items) == Listed(frozenset({"1", "2", "3", "4"}), frozenset({"a", "lobby"}))
    assert Listed.parse(None) == Listed(frozenset(), frozenset())
