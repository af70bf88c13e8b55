"""Pods held back only as outdated (a rollout replaces them) take new users when no pod is
available: the updated pods may fill up or drain themselves between two runs of the operator,
and new users must never be left with nowhere to go meanwhile. Every placement path: one user,
a batch, an eviction's rebind; never while a pod is available, never a pod kept off for another
reason (its own report, the cap, the table's own DenyNewCall, Shutdown). A hand-off never takes
a held pod: its user has a pod (the one handing it off), and would move again from an outdated
one."""

from __future__ import annotations

import pytest

from stateful_route import InvalidInput, PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC

DENY = RoutingState.DENY_NEW_CALL


async def rollout(redis, prefix: str, *, cap: int = 0, deny_1: bool = False) -> tuple[RouteTable, LinkStore]:
    """Pod 2 updated; pods 0 and 1 outdated, held back (pod 1 also DenyNewCall by the table's
    own say when ``deny_1``: not held then)."""
    table = RouteTable(redis, prefix=prefix)
    await table.configure(NS, SVC, max_links_per_pod=cap)
    pods = [PodState(0, routing=DENY), PodState(1, routing=DENY), PodState(2)]
    await table.put_pods(NS, SVC, pods, held=[0] if deny_1 else [0, 1])
    return table, LinkStore(redis, table.keyring)


def server(redis, prefix: str, pod: int) -> ServerDriver:
    return ServerDriver(redis, namespace=NS, service=SVC, pod_index=pod, prefix=prefix)


async def test_held_pods_take_no_new_users_while_a_pod_is_available(redis, prefix):
    table, store = await rollout(redis, prefix)
    route_keys = table.keyring.route(NS, SVC)
    placed = [await store.place(route_keys, f"u{i}", 60) for i in range(10)]
    assert {p.pod for p in placed if p is not None} == {2}
    assert set(await store.place_many(route_keys, [f"m{i}" for i in range(10)], 60)) == {2}
    snapshot = await table.snapshot(NS, SVC)
    assert snapshot.available == {2}
    assert snapshot.best == 2


async def test_the_updated_pod_at_its_cap_sends_new_users_to_held_pods(redis, prefix):
    table, store = await rollout(redis, prefix, cap=3)
    route_keys = table.keyring.route(NS, SVC)
    first = [await store.place(route_keys, f"u{i}", 60) for i in range(3)]
    assert {p.pod for p in first if p is not None} == {2}
    assert (await table.snapshot(NS, SVC)).best == 0  # the pod placement takes now
    # The least loaded held pod first, then balanced between them, up to their cap.
    more = [await store.place(route_keys, f"v{i}", 60) for i in range(4)]
    assert [p.pod for p in more if p is not None] == [0, 1, 0, 1]
    assert await store.place_many(route_keys, ["w0", "w1", "w2"], 60) == [0, 1, None]
    assert await store.place(route_keys, "x", 60) is None  # all full: nowhere, truly
    snapshot = await table.snapshot(NS, SVC)
    assert snapshot.links == {0: 3, 1: 3, 2: 3}
    assert snapshot.available == frozenset()  # held pods are still not available as such


async def test_the_updated_pod_draining_itself_sends_new_users_to_held_pods(redis, prefix):
    table, store = await rollout(redis, prefix)
    route_keys = table.keyring.route(NS, SVC)
    await server(redis, prefix, 2).set_load_state(5)
    await server(redis, prefix, 0).set_load_state(1)
    await server(redis, prefix, 2).set_routing_state(DENY)
    placed = await store.place(route_keys, "u", 60)
    assert placed is not None
    assert placed.pod == 1  # the best held pod (load 0 against 1)
    await server(redis, prefix, 2).set_routing_state(RoutingState.READY)
    placed = await store.place(route_keys, "v", 60)
    assert placed is not None
    assert placed.pod == 2  # available again: the held pods step back at once


async def test_held_pods_kept_off_for_another_reason_take_nobody(redis, prefix):
    table, store = await rollout(redis, prefix, cap=1, deny_1=True)
    route_keys = table.keyring.route(NS, SVC)
    assert (await store.place(route_keys, "first", 60)).pod == 2  # type: ignore[union-attr]
    await server(redis, prefix, 0).set_routing_state(DENY)  # held, but drains itself
    assert await store.place(route_keys, "u", 60) is None  # pod 1: DenyNewCall, not held
    await server(redis, prefix, 0).set_routing_state(RoutingState.READY)
    assert (await store.place(route_keys, "u", 60)).pod == 0  # type: ignore[union-attr]
    assert await store.place(route_keys, "v", 60) is None  # pod 0 at the cap now
    await table.put_pods(NS, SVC, [PodState(0, routing=RoutingState.SHUTDOWN), PodState(2)], held=[0])
    assert await store.place(route_keys, "w", 60) is None  # Shutdown: not routable at all
    await store.unlink(route_keys, "u", expected=None, keep=0)
    await table.put_pods(NS, SVC, [PodState(0, routing=DENY), PodState(2)])  # no longer held
    assert await store.place(route_keys, "w", 60) is None
    assert (await table.snapshot(NS, SVC)).best is None


async def test_an_eviction_rebinds_onto_held_pods_when_the_updated_pod_is_full(redis, prefix):
    table, store = await rollout(redis, prefix, cap=2)
    route_keys = table.keyring.route(NS, SVC)
    for i in range(2):
        await store.link_persistent(route_keys, f"p{i}", 2, only_if_free=False)
    for i in range(2):  # users of outdated pod 0, which goes now
        await store.link_if_absent(route_keys, f"gone{i}", 0, 60)
    eviction = await evict(store, route_keys, 0, reason="test", rebind_ttl=60)
    assert eviction.rebound == 2
    assert await store.read_many(route_keys, ["gone0", "gone1"]) == [1, 1]


async def test_a_hand_off_never_moves_the_user_to_a_held_pod(redis, prefix):
    table, store = await rollout(redis, prefix, cap=1)
    route_keys = table.keyring.route(NS, SVC)
    await store.link_persistent(route_keys, "a", 2, only_if_free=False)  # pod 2 at its cap
    await store.link_persistent(route_keys, "b", 1, only_if_free=False)
    assert await server(redis, prefix, 1).hand_off("b") is None  # the user stays on pod 1
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 1, 2: 1}
    assert (await store.place(route_keys, "new", 60)).pod == 0  # a new user takes the held pod


async def test_held_must_name_pods_written(redis, prefix):
    table, _ = await rollout(redis, prefix)
    before = await table.snapshot(NS, SVC)
    with pytest.raises(InvalidInput, match="held"):
        await table.put_pods(NS, SVC, [PodState(0), PodState(2)], held=[1])
    with pytest.raises(InvalidInput, match="held"):
        await table.put_pods(NS, SVC, [PodState(0)], held=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="held"):
        await table.update_pod(NS, SVC, PodState(0), held=1)  # type: ignore[arg-type]
    assert await table.snapshot(NS, SVC) == before
    route_keys = table.keyring.route(NS, SVC)
    assert await redis.smembers(route_keys.held) == {b"0", b"1"}


async def test_held_and_spare_sets_go_with_their_pods_and_the_table(redis, prefix):
    table, _ = await rollout(redis, prefix)
    route_keys = table.keyring.route(NS, SVC)
    await table.remove_pod(NS, SVC, 1)
    assert await redis.smembers(route_keys.held) == {b"0"}
    assert await redis.zrange(route_keys.spare, 0, -1) == [b"0"]
    await table.put_pods(NS, SVC, [PodState(2)])
    assert await redis.exists(route_keys.held, route_keys.spare) == 0
    await table.put_pods(NS, SVC, [PodState(0, routing=DENY), PodState(2)], held=[0])
    await table.delete(NS, SVC)
    assert await redis.exists(route_keys.held, route_keys.spare) == 0
