"""Pod states, routing states and key layout: pure functions, no Redis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from stateful_route import InvalidInput, PodState, RoutingState
from stateful_route.core import validation as v
from stateful_route.store.changes import ChangeKind, evicted, parse, table_changed, unlinked
from stateful_route.store.keys import Keyring


@pytest.mark.parametrize(
    ("pod", "alive", "routable", "available"),
    [
        (PodState(0), True, True, True),
        (PodState(0, routing=RoutingState.DENY_NEW_CALL), True, True, False),
        (PodState(0, routing=RoutingState.SHUTDOWN), True, False, False),
        (PodState(0, ready=False), False, False, False),
        (PodState(0, terminating=True), False, False, False),
    ],
)
def test_routable_and_available(pod, alive, routable, available):
    assert (pod.alive, pod.routable, pod.available) == (alive, routable, available)


def test_routing_states_order_by_restrictiveness_and_parse_labels():
    assert max(RoutingState.READY, RoutingState.SHUTDOWN, RoutingState.DENY_NEW_CALL) is RoutingState.SHUTDOWN
    for state in RoutingState:
        assert RoutingState.parse(state.label) is state


def valid_uid(uid: str) -> bool:
    try:
        v.uid(uid)
    except InvalidInput:
        return False
    return True


labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
uids = st.text(min_size=1, max_size=60).filter(valid_uid)


@given(ns=labels, svc=labels, uid=uids)
def test_all_keys_of_a_route_share_one_slot(ns, svc, uid):
    route_keys = Keyring("sr").route(ns, svc)
    slot = key_slot(route_keys.pods.encode())
    for key in (route_keys.link(uid), route_keys.pod(3), route_keys.reports, route_keys.config):
        assert key_slot(key.encode()) == slot


@given(a=st.tuples(labels, labels, uids), b=st.tuples(labels, labels, uids))
def test_distinct_inputs_never_share_a_link_key(a, b):
    ring = Keyring("sr")
    if a != b:
        assert ring.route(a[0], a[1]).link(a[2]) != ring.route(b[0], b[1]).link(b[2])


@given(svc=labels, uid=uids, pod=st.integers(0, 10**6))
def test_change_messages_round_trip(svc, uid, pod):
    assert parse(table_changed(svc)) == parse(table_changed(svc).encode())
    assert parse(table_changed(svc)).routable is None
    assert parse(table_changed(svc, [pod, 0])).routable == {pod, 0}
    assert parse(table_changed(svc, [1], at=1764300000.123)).at == 1764300000.123
    assert parse(table_changed(svc, [])).routable == frozenset()
    assert parse(table_changed(svc)).kind is ChangeKind.TABLE
    assert (parse(unlinked(svc, uid)).kind, parse(unlinked(svc, uid)).subject) == (ChangeKind.UNLINKED, uid)
    assert (parse(evicted(svc, pod)).kind, parse(evicted(svc, pod)).subject) == (ChangeKind.EVICTED, str(pod))
    assert parse(b"nonsense") is None
    assert parse(b"x|room|1") is None
    assert parse(b"t|") is None


@pytest.mark.parametrize(("value", "minimum"), [(0, 1), (-1, 0), (True, 0), (1.0, 0), ("3", 0), (2**31, 0)])
def test_integers_out_of_range_or_of_another_type_name_their_field(value, minimum):
    with pytest.raises(InvalidInput) as caught:
        v.integer("spec.x", value, minimum=minimum)
    assert caught.value.field == "spec.x"
    assert v.integer("spec.x", minimum, minimum=minimum) == minimum
