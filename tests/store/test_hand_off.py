"""ServerDriver's hand-off: a compare-and-swap of one link to another pod, every gateway told at
once; linked_users; hand_off_all with its callback, retries and Shutdown."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from stateful_route import HandOffResult, InvalidInput, RouteTable, RoutingState, ServerDriver
from stateful_route.core.state import PodPhase
from stateful_route.store.keys import Keyring, RouteKeys
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.shards import HOLDERS, holders, pod_entries, write_links
from tests.routes import NS, SVC, clients, keys_under, make_route, poll_until


def server(redis, prefix, pod: int) -> ServerDriver:
    return ServerDriver(redis, namespace=NS, service=SVC, pod_index=pod, prefix=prefix)


def link_key(prefix: str, uid: str) -> str:
    return f"{prefix}:{{{NS}/{SVC}}}:l:{uid}"


def route_keys(prefix: str) -> RouteKeys:
    return Keyring(prefix).route(NS, SVC)


async def test_hand_off_moves_the_link_to_the_best_other_pod_keeping_its_kind(redis, prefix):
    await make_route(redis, prefix, pods=3)
    pod0, pod1 = server(redis, prefix, 0), server(redis, prefix, 1)
    async with clients(lambda: redis, prefix, 1, link_ttl=120) as (client,):
        await pod1.set_load_state(50)  # pod 2 is the best other pod
        assert await client.set_linked_pod_if_absent(NS, "temp", SVC, 0) == 0
        assert await pod0.set_linked_pod("kept") is None
        ttl_before = await redis.pttl(link_key(prefix, "temp"))

        assert await pod0.hand_off("temp") == 2
        assert await redis.get(link_key(prefix, "temp")) == b"2"
        assert 0 < await redis.pttl(link_key(prefix, "temp")) <= ttl_before  # keeps its expiry
        assert await pod0.hand_off("kept") == 2
        assert await redis.get(link_key(prefix, "kept")) == b"2p"  # persistent stays persistent
        assert await redis.pttl(link_key(prefix, "kept")) == -1
        assert await pod_entries(redis, route_keys(prefix), 0) == {}
        assert sorted(await pod_entries(redis, route_keys(prefix), 2)) == ["kept", "temp"]
        snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
        assert snapshot.links == {0: 0, 1: 0, 2: 2}
        assert snapshot.best == 0  # the scores followed the move


async def test_hand_off_does_nothing_unless_the_link_points_here(redis, prefix):
    await make_route(redis, prefix, pods=3)
    pod0, pod1 = server(redis, prefix, 0), server(redis, prefix, 1)
    await pod0.set_linked_pod("mover")
    before = await keys_under(redis, prefix)
    assert await pod0.hand_off("nobody") is None  # no link: none is created
    assert await pod1.hand_off("mover") is None  # linked elsewhere: untouched
    assert await keys_under(redis, prefix) == before
    # The user moved meanwhile (pod 1 took it over): pod 0's late hand-off does nothing.
    assert await pod1.set_linked_pod("mover") == 0
    after_move = await keys_under(redis, prefix)
    assert await pod0.hand_off("mover") is None
    assert await keys_under(redis, prefix) == after_move
    with pytest.raises(InvalidInput) as bad:
        await pod0.hand_off("")
    assert bad.value.field == "uid"


async def test_hand_off_keeps_the_link_when_no_other_pod_is_available(redis, prefix):
    await make_route(redis, prefix, pods=2)
    pod0, pod1 = server(redis, prefix, 0), server(redis, prefix, 1)
    await pod0.set_linked_pod("stuck")
    await pod1.set_routing_state(RoutingState.DENY_NEW_CALL)
    assert await pod0.hand_off("stuck") is None
    assert await redis.get(link_key(prefix, "stuck")) == b"0p"
    await pod1.set_routing_state(RoutingState.READY)
    assert await pod0.hand_off("stuck") == 1


async def test_racing_hand_offs_never_link_a_user_to_two_pods(redis, make_redis, prefix):
    """Two pods hand the same users back and forth while gateways place them and an atomic
    reader checks, for random users, that the link and the per-pod sets agree at every moment."""
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    rng = random.Random(seed)
    await make_route(redis, prefix, pods=3)
    users = [f"u{i}" for i in range(150)]
    pods = {i: server(make_redis(), prefix, i) for i in range(2)}
    temporary = set(users[::3])  # a third temporary, the rest persistent
    async with clients(make_redis, prefix, 1, link_ttl=600) as (linker,):
        for i, uid in enumerate(users):
            if uid in temporary:
                await linker.set_linked_pod_if_absent(NS, uid, SVC, i % 2)
            else:
                await pods[i % 2].set_linked_pod(uid)
    moves: list[tuple[int, str, int | None]] = []
    stop = asyncio.Event()
    broken: list[str] = []

    async def hand_offs(pod: int, order: list[str]) -> None:
        for uid in order:
            moves.append((pod, uid, await pods[pod].hand_off(uid)))

    async def check() -> None:
        reader = make_redis()
        while not stop.is_set():
            uid = rng.choice(users)
            async with reader.pipeline(transaction=True) as pipe:  # MULTI/EXEC: one moment
                pipe.get(link_key(prefix, uid))
                pipe.eval(HOLDERS, 1, route_keys(prefix).pod(0), route_keys(prefix).pod_links, uid, 2)
                link, found = await pipe.execute()
            pods_holding = [int(p) for p in found]
            if link is None or pods_holding != [int(link.rstrip(b"p"))]:
                broken.append(f"{uid}: link {link!r}, in the sets of pods {pods_holding}")

    async with clients(make_redis, prefix, 2) as gateways:

        async def lookups() -> None:
            while not stop.is_set():
                await rng.choice(gateways).compute_linked_pod(NS, rng.choice(users), SVC)

        checkers = [asyncio.create_task(check()), asyncio.create_task(lookups())]
        await asyncio.gather(*(hand_offs(p, rng.sample(users, len(users))) for p in (0, 1) for _ in range(3)))
        stop.set()
        await asyncio.gather(*checkers)
    assert broken == [], f"seed={seed}"
    moved = [(pod, uid, to) for pod, uid, to in moves if to is not None]
    assert moved, f"seed={seed}: nothing was handed off"
    assert all(to != pod for pod, _, to in moved)
    # Every hand-off moved the user off the pod that made it: per user and pod, arrivals (the
    # initial link included) minus departures is 1 for the final pod and 0 for the others.
    for i, uid in enumerate(users):
        balance = {pod: int(pod == i % 2) for pod in range(3)}
        for pod, who, to in moved:
            if who == uid:
                balance[pod] -= 1
                balance[to] += 1
        final = int((await redis.get(link_key(prefix, uid))).rstrip(b"p"))
        assert balance == {pod: int(pod == final) for pod in range(3)}, (uid, balance, seed)
    for uid in users:  # one link each, in exactly its pod's set
        link = await redis.get(link_key(prefix, uid))
        assert link is not None, (uid, seed)
        assert link.endswith(b"p") == (uid not in temporary), (uid, link, seed)
        assert await holders(redis, route_keys(prefix), uid, 3) == [int(link.rstrip(b"p"))], (uid, seed)


async def test_gateways_stop_answering_the_old_pod_within_a_second(redis, make_redis, prefix):
    await make_route(redis, prefix, pods=2)
    pod0 = server(redis, prefix, 0)
    async with clients(make_redis, prefix, 3) as gateways:
        for gateway in gateways:
            assert await gateway.compute_linked_pod(NS, "player", SVC) == 0
        await pod0.set_routing_state(RoutingState.DENY_NEW_CALL)  # still routable: caches stay valid
        for gateway in gateways:
            assert await gateway.compute_linked_pod(NS, "player", SVC) == 0
        assert await pod0.hand_off("player") == 1

        async def all_moved() -> bool:
            return all([await g.compute_linked_pod(NS, "player", SVC) == 1 for g in gateways])

        await poll_until(all_moved, within=1)


async def test_linked_users_lists_each_live_link_once(redis, prefix):
    await make_route(redis, prefix, pods=2)
    pod0 = server(redis, prefix, 0)
    users = {f"u{i}" for i in range(2500)}  # more than one page
    pipe = redis.pipeline(transaction=False)
    for uid in users:
        pipe.set(link_key(prefix, uid), "0p")
    await pipe.execute()
    # "expired": a temporary link that expired long ago
    await write_links(redis, route_keys(prefix), 0, {**dict.fromkeys(users, float("inf")), "expired": 1})
    listed = [uid async for uid in pod0.linked_users()]
    assert len(listed) == len(users)
    assert set(listed) == users
    assert [uid async for uid in server(redis, prefix, 1).linked_users()] == []


async def test_hand_off_all_calls_back_once_per_user_before_its_move_then_reports_shutdown(redis, prefix):
    await make_route(redis, prefix, pods=3)
    pod0 = server(redis, prefix, 0)
    users = [f"u{i}" for i in range(300)]
    for uid in users[:200]:
        await pod0.set_linked_pod(uid)
    async with clients(lambda: redis, prefix, 1) as (client,):
        for uid in users[200:]:
            await client.set_linked_pod_if_absent(NS, uid, SVC, 0)
    called: list[str] = []
    linked_here_when_called: list[bool] = []

    async def persist(uid: str) -> None:
        called.append(uid)
        linked_here_when_called.append((await redis.get(link_key(prefix, uid))).rstrip(b"p") == b"0")
        await asyncio.sleep(0)

    result = await pod0.hand_off_all(concurrency=8, before=persist)
    assert result == HandOffResult(moved=300, failed=0, left=0)
    assert sorted(called) == sorted(users)  # once each
    assert all(linked_here_when_called)  # before the move
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.links == {0: 0, 1: 150, 2: 150}
    assert snapshot.pods[0].routing is RoutingState.SHUTDOWN


async def test_hand_off_all_leaves_a_user_whose_callback_fails(redis, prefix):
    await make_route(redis, prefix, pods=2)
    pod0 = server(redis, prefix, 0)
    for uid in ("a", "b", "c"):
        await pod0.set_linked_pod(uid)

    async def persist(uid: str) -> None:
        if uid == "b":
            raise OSError("disk full")

    assert await pod0.hand_off_all(before=persist) == HandOffResult(moved=2, failed=1, left=1)
    assert await redis.get(link_key(prefix, "b")) == b"0p"


async def test_hand_off_all_retries_until_a_pod_is_available_or_time_is_up(redis, prefix):
    await make_route(redis, prefix, pods=2)
    pod0, pod1 = server(redis, prefix, 0), server(redis, prefix, 1)
    for uid in ("a", "b"):
        await pod0.set_linked_pod(uid)
    await pod1.set_routing_state(RoutingState.DENY_NEW_CALL)
    calls: list[str] = []

    async def persist(uid: str) -> None:
        calls.append(uid)

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await pod0.hand_off_all(before=persist, within=0.5) == HandOffResult(moved=0, failed=0, left=2)
    assert 0.5 <= loop.time() - started < 2
    assert sorted(calls) == ["a", "b"]  # not called again on retries

    await pod0.set_routing_state(RoutingState.READY)
    calls.clear()

    async def undrain_later() -> None:
        await asyncio.sleep(0.3)
        await pod1.set_routing_state(RoutingState.READY)

    undrain = asyncio.create_task(undrain_later())
    assert await pod0.hand_off_all(before=persist, within=5) == HandOffResult(moved=2, failed=0, left=0)
    await undrain
    assert sorted(calls) == ["a", "b"]


async def test_hand_off_all_rejects_bad_arguments_before_writing(redis, prefix):
    await make_route(redis, prefix, pods=2)
    before = await keys_under(redis, prefix)
    for bad in ({"concurrency": 0}, {"within": -1}, {"retry_every": 0}, {"before": 5}):
        with pytest.raises(InvalidInput) as error:
            await server(redis, prefix, 0).hand_off_all(**bad)
        assert error.value.field == next(iter(bad))
    assert await keys_under(redis, prefix) == before


async def test_hand_off_never_moves_a_user_onto_a_pod_marked_outdated(redis, prefix):
    # The operator marks pods a rolling update will replace (the route's phases); it holds them
    # back from new users only while an updated pod takes them, so a hand-off must check itself.
    await make_route(redis, prefix, pods=3)
    table = RouteTable(redis, prefix=prefix)
    pod0 = server(redis, prefix, 0)
    await pod0.set_linked_pod("waiting")
    await table.put_phases(NS, SVC, {1: PodPhase(outdated=True), 2: PodPhase(outdated=True)})
    assert await table.phases(NS, SVC) == {1: PodPhase(outdated=True), 2: PodPhase(outdated=True)}
    assert await pod0.hand_off("waiting") is None
    assert await redis.get(link_key(prefix, "waiting")) == b"0p"
    # Pod 1 runs the new revision: the phases are replaced whole, and the hand-off goes there.
    phases = {0: PodPhase(terminating_until=1.5, outdated=True), 2: PodPhase(outdated=True)}
    await table.put_phases(NS, SVC, phases)
    assert await table.phases(NS, SVC) == phases
    await server(redis, prefix, 2).set_load_state(50)  # pod 1 is the best other pod
    assert await pod0.hand_off("waiting") == 1
    await table.put_phases(NS, SVC, {})
    assert await table.phases(NS, SVC) == {}


async def test_hand_off_all_hands_off_a_user_linked_here_again_after_it_was_gone(redis, prefix):
    # Case A of an outside review: the first user is unlinked by its own callback (the hand-off
    # finds it gone), then linked here again by the next callback. It is handed off in the next
    # pass like any other user (its callback runs again: its state here is new), and ``left``
    # is the count in Redis, never 0 while it is linked here.
    await make_route(redis, prefix, pods=2)
    pod0 = server(redis, prefix, 0)
    for uid in ("a", "b"):
        await pod0.set_linked_pod(uid)
    calls: list[str] = []

    async def persist(uid: str) -> None:
        calls.append(uid)
        if len(calls) == 1:
            assert await pod0.remove_linked_pod(uid)
        elif len(calls) == 2:
            assert await pod0.set_linked_pod(calls[0]) is None

    result = await pod0.hand_off_all(concurrency=1, before=persist, within=5)
    assert result == HandOffResult(moved=2, failed=0, left=0), calls
    assert await redis.get(link_key(prefix, calls[0])) == b"1p"
    assert calls == [calls[0], calls[1], calls[0]]
    assert [uid async for uid in pod0.linked_users()] == []


async def test_hand_off_all_counts_a_user_linked_here_during_its_last_pass_as_left(redis, prefix):
    # Case B of an outside review, made deterministic: the callback links a new user here, then
    # hangs until the deadline cancels it. No listing ever saw the new user: ``left`` counts it.
    await make_route(redis, prefix, pods=2)
    pod0 = server(redis, prefix, 0)
    await pod0.set_linked_pod("a")

    async def link_late_then_hang(uid: str) -> None:
        await pod0.set_linked_pod("late")
        await asyncio.Event().wait()

    result = await pod0.hand_off_all(before=link_late_then_hang, within=0.3)
    assert result == HandOffResult(moved=0, failed=0, left=2)
    assert sorted([uid async for uid in pod0.linked_users()]) == ["a", "late"]


async def test_hand_off_all_left_is_the_count_in_redis_whatever_callbacks_do(redis, prefix):
    # Seeded scenarios: callbacks unlink their own user, link it here again (the hand-off found
    # it gone) and link new users here while the passes run. ``left`` is always exactly who is
    # linked here at the end, and every user is handed off in the end (pod 1 takes them all).
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    for n in range(8):
        scenario = f"{prefix}s{n}"  # its own keys, deleted after (the fixture deletes prefix's)
        try:
            rng = random.Random(seed + n)
            await hand_off_while_callbacks_meddle(redis, scenario, rng, f"seed={seed}+{n}")
        finally:
            await delete_prefix(redis, scenario)


async def hand_off_while_callbacks_meddle(redis, prefix: str, rng: random.Random, label: str) -> None:
    await make_route(redis, prefix, pods=2)
    pod0 = server(redis, prefix, 0)
    users = [f"u{i}" for i in range(rng.randrange(1, 12))]
    for uid in users:
        await pod0.set_linked_pod(uid)
    spare = [f"new{i}" for i in range(6)]
    removed: list[str] = []
    actions = rng.randrange(0, 12)

    async def meddle(uid: str) -> None:
        nonlocal actions
        if actions <= 0:
            return
        actions -= 1
        match rng.randrange(3):
            case 0:  # its own user: the hand-off finds it gone
                if await pod0.remove_linked_pod(uid):
                    removed.append(uid)
            case 1 if removed:  # one found gone (or about to be), linked here again
                await pod0.set_linked_pod(removed.pop(rng.randrange(len(removed))))
            case _:
                await pod0.set_linked_pod(spare.pop() if spare else rng.choice(users))

    result = await pod0.hand_off_all(concurrency=rng.randrange(1, 4), before=meddle, within=5)
    linked_here = [u async for u in pod0.linked_users()]
    assert result.left == len(linked_here), (label, result, linked_here)
    assert (result.failed, result.waiting) == (0, 0), label
    assert result.left == 0, (label, result, linked_here)  # pod 1 took every user in the end
    # A callback may link a user already moved here again: it moves twice.
    assert result.moved >= len([u async for u in server(redis, prefix, 1).linked_users()]), label
