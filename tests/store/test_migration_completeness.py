"""Outside review 1, D1 and D2 and their suspicions: ``migrate`` must never report done while
layout-1 data is left, and after a full run (``stateful-route migrate``, once the last layout-1
client is gone) counts are exact and eviction finds every user, whatever the old drivers did.

D1: a layout-1 pod driver removing users after the route was marked leaves shard entries no
layout-1 set shows. D2: a layout-1 set above every index the route knows. Suspicion 2: a layout-1
set created while a migration runs. Suspicion 1 (a shard split while the verify pass walks the
shards) is exercised by the randomized run, which writes between the migration's calls.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from stateful_route import PodState, RouteTable, ServerDriver
from stateful_route.core.constants import LAYOUT
from stateful_route.store import migration
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore
from stateful_route.store.migration import Migrator
from tests.routes import NS, SVC
from tests.store.layout_1 import OldRelease
from tests.store.test_upgrade_from_layout_1 import links_by_pod, on_pod

READY = "1,0,0,0"


async def legacy_sets(redis, prefix: str) -> list[str]:
    """The route's layout-1 pod sets still in Redis (``p:exp`` is not one)."""
    found = [k.decode() async for k in redis.scan_iter(match=f"{prefix}:{{{NS}/{SVC}}}:p:*", count=1000)]
    return sorted(k for k in found if k.rsplit(":", 1)[1].isdigit())


async def assert_exact(redis, prefix: str, table: RouteTable, pods: int) -> None:
    """Counts equal the stored links for every pod, and ``linked_users`` lists each of them."""
    links = await links_by_pod(redis, prefix)
    assert (await table.snapshot(NS, SVC)).links == {p: on_pod(links, p) for p in range(pods)}, links
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    for pod in range(pods):
        assert len({uid async for uid in store.linked_users(route_keys, pod)}) == on_pod(links, pod)


async def test_d1_full_migration_of_a_marked_route_removes_what_an_old_driver_left(redis, prefix):
    """The operator marked the route; an old pod driver then removed 50 users (its REMOVE leaves
    their shard entries). The full migration (``stateful-route migrate``) finds and removes them."""
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods(dict.fromkeys(range(3), READY))
    for i in range(300):
        await old.set_linked_pod(f"u{i}", int((await old.place(f"u{i}"))[0]))
    table = RouteTable(redis, prefix=prefix)
    migrator = Migrator(redis, table.keyring, 1.0)
    assert (await migrator.migrate(NS, SVC)).done  # the operator starts
    for i in range(50):
        await old.remove(f"u{i}")  # an old pod driver still running
    done = await migrator.migrate(NS, SVC, full=True)  # the old clients are gone
    assert (done.before, done.after, done.stale, done.checked) == (LAYOUT, LAYOUT, 50, 300)
    await assert_exact(redis, prefix, table, 3)
    again = await migrator.migrate(NS, SVC, full=True)
    assert (again.stale, again.checked, again.moved) == (0, 250, {})


async def test_d2_a_layout_1_set_above_every_known_index_is_moved_before_done(redis, prefix):
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods(dict.fromkeys(range(3), READY))
    for i in range(10):
        await old.set_linked_pod(f"u{i}", 5)  # an old driver of pod 5, not yet in the table
    table = RouteTable(redis, prefix=prefix)
    done = await Migrator(redis, table.keyring, 1.0).migrate(NS, SVC)
    assert (done.moved, done.done) == ({5: 10}, True)
    assert await legacy_sets(redis, prefix) == []
    await table.put_pods(NS, SVC, [PodState(i) for i in range(6)])
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 10}
    await assert_exact(redis, prefix, table, 6)


async def test_a_layout_1_set_created_during_the_migration_is_moved_before_done(redis, prefix):
    """Suspicion 2: an old pod driver confirms a user on pod 1 (no layout-1 set when the
    migration started) just before its last call: the migration moves it too before recording
    the layout. An old writer that goes on writing before every last call leaves the route
    unmarked (not done), never marked with a set left."""
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods({0: READY})
    for i in range(20):
        await old.place(f"u{i}")
    await old.put_pods(dict.fromkeys(range(3), READY))
    table = RouteTable(redis, prefix=prefix)
    migrator = Migrator(redis, table.keyring, 1.0)
    finish = migrator._finish
    late = iter([f"u{i}" for i in range(20, 40)])
    writes = 1

    async def late_old_write(**call: Any) -> Any:
        nonlocal writes
        if writes:
            writes -= 1
            await old.set_linked_pod(next(late), 1)
        return await finish(**call)

    migrator._finish = late_old_write  # type: ignore[assignment]
    done = await migrator.migrate(NS, SVC)
    assert (done.done, done.moved) == (True, {0: 20, 1: 1})
    assert await legacy_sets(redis, prefix) == []
    await assert_exact(redis, prefix, table, 3)

    await redis.hdel(old.base + "cfg", "layout")  # as if never migrated
    writes = 100
    done = await migrator.migrate(NS, SVC)
    assert not done.done
    assert await redis.hget(old.base + "cfg", "layout") is None
    migrator._finish = finish
    assert (await migrator.migrate(NS, SVC, full=True)).done
    assert await legacy_sets(redis, prefix) == []
    await assert_exact(redis, prefix, table, 3)


async def test_verify_meets_every_stale_entry_while_shards_split(redis, prefix, monkeypatch):
    """Suspicion 1: new pod drivers confirm users between the verify pass's calls, so pod 0's
    shards split behind and ahead of its cursor; every stale entry present throughout is still
    met and removed by that one run."""
    monkeypatch.setattr(migration, "BATCH", 40)  # many verify calls, a split between each
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods({0: READY})
    for i in range(300):
        await old.set_linked_pod(f"u{i}", int((await old.place(f"u{i}"))[0]))
    table = RouteTable(redis, prefix=prefix)
    migrator = Migrator(redis, table.keyring, 1.0)
    assert (await migrator.migrate(NS, SVC)).done
    for i in range(0, 300, 3):
        await old.remove(f"u{i}")  # 100 stale entries, spread over the shards
    server = ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix)
    widths: list[int] = []
    newcomers = iter(range(10_000))
    real_guard = migrator._guard

    async def confirm_between_calls(call: Any, seconds: float) -> Any:
        for _ in range(30):
            await server.set_linked_pod(f"new-{next(newcomers)}")
        widths.append(int(await redis.hget(table.keyring.route(NS, SVC).pod_links + "w", "0") or 1))
        return await real_guard(call, seconds)

    migrator._guard = confirm_between_calls
    done = await migrator.migrate(NS, SVC, full=True)
    migrator._guard = real_guard
    assert (done.done, done.stale) == (True, 100)
    assert widths[-1] > widths[0]  # the shards did split during the run
    await assert_exact(redis, prefix, table, 1)


@pytest.mark.parametrize("seed", [20261207, 1, 2, 3, 4, 5])
async def test_random_mix_of_old_and_new_drivers_and_migrations(redis, prefix, seed):
    """Old and new gateways, pod drivers (of pods in the table or not yet) and operators, with
    migrations (the operator's and full ones) at random points and writes between a migration's
    calls (so shards split while the verify pass walks them). Once the old clients are gone, one
    full migration leaves no layout-1 set, exact counts, every user listed, and eviction of
    every pod leaves no link."""
    print(f"seed={seed}")
    rnd = random.Random(seed)
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods(dict.fromkeys(range(3), READY))
    table = RouteTable(redis, prefix=prefix)
    servers = [ServerDriver(redis, namespace=NS, service=SVC, pod_index=p, prefix=prefix) for p in range(6)]
    migrator = Migrator(redis, table.keyring, 1.0)
    users = [f"user-{i}" for i in range(400)]

    async def step() -> None:
        uid = rnd.choice(users)
        match rnd.randrange(8):
            case 0 | 1:
                await old.place(uid)
            case 2:
                await old.set_linked_pod(uid, rnd.randrange(6))
            case 3:
                await old.remove(uid)
            case 4 | 5:
                await servers[rnd.randrange(3)].set_linked_pod(uid)
            case 6:
                await servers[0].remove_linked_pod(uid)
            case _:
                pods = rnd.randrange(3, 7)
                if rnd.randrange(2):
                    await old.put_pods(dict.fromkeys(range(pods), READY))
                else:
                    await table.put_pods(NS, SVC, [PodState(i) for i in range(pods)])

    real_guard = migrator._guard

    async def writes_between_calls(call: Any, seconds: float) -> Any:
        for _ in range(rnd.randrange(4)):
            await step()
        return await real_guard(call, seconds)

    for _ in range(1500):
        if rnd.randrange(300) == 0:
            migrator._guard = writes_between_calls
            await migrator.migrate(NS, SVC, full=bool(rnd.randrange(2)))
            migrator._guard = real_guard
        await step()

    await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])
    for _ in range(50):  # old pod drivers of pods 3-5, no longer in the table
        await old.set_linked_pod(rnd.choice(users), rnd.randrange(3, 6))
    await migrator.migrate(NS, SVC)  # an operator starts
    for _ in range(50):  # the last old pod drivers, before they go
        await old.remove(rnd.choice(users))
    done = await migrator.migrate(NS, SVC, full=True)  # the old clients are gone
    assert done.done, done.as_dict()
    assert await legacy_sets(redis, prefix) == []
    await table.put_pods(NS, SVC, [PodState(i) for i in range(6)])
    await assert_exact(redis, prefix, table, 6)
    store = LinkStore(redis, table.keyring)
    for pod in range(6):
        await evict(store, table.keyring.route(NS, SVC), pod, reason="test", rebind_ttl=None)
    assert await links_by_pod(redis, prefix) == {}
