"""Outside review 3 (issue 22), findings 1-3: a route written by the release of layout 1 (commit
4fd8d86, its frozen scripts in tests/data/layout_1), then served by today's code on the same Redis.

1. Old and new pod drivers at once must not corrupt counts for good, and evictions find users.
2. Users linked by the old code are found by hand-off, eviction and counts (migrated or not).
3. The phases key's type change (a JSON string, then a hash) is read, not a WRONGTYPE failure.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from stateful_route import ClientDriver, PodState, RouteTable, ServerDriver
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.core.constants import LAYOUT
from stateful_route.core.errors import StoreUnavailable
from stateful_route.core.state import PodPhase
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore
from stateful_route.store.migration import Migrator
from tests.routes import NS, SVC, make_route
from tests.store.layout_1 import OldRelease

READY = "1,0,0,0"


async def links_by_pod(redis, prefix: str) -> dict[str, int]:
    """Every stored link of the route, by value ('1p': persistent on pod 1)."""
    found: dict[str, int] = {}
    async for key in redis.scan_iter(match=f"{prefix}:{{{NS}/{SVC}}}:l:*", count=1000):
        value = (await redis.get(key)).decode()
        found[value] = found.get(value, 0) + 1
    return found


def on_pod(links: dict[str, int], pod: int) -> int:
    return links.get(str(pod), 0) + links.get(f"{pod}p", 0)


async def test_finding_1_old_and_new_pod_drivers_confirming_the_same_users(redis, prefix):
    """A new pod 0 confirms 100 users; a pod 1 still on the old library confirms the same users.
    After the next table write and the migration (the operator runs it when it starts), counts
    equal the links; evicting pod 1 removes all 100 and leaves no link naming it."""
    table = await make_route(redis, prefix, pods=3)
    old = OldRelease(redis, prefix)
    new_pod = ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix)
    users = [f"user-{i}" for i in range(100)]
    for uid in users:
        await new_pod.set_linked_pod(uid)
    for uid in users:
        await old.set_linked_pod(uid, 1)
    await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])
    assert await links_by_pod(redis, prefix) == {"1p": 100}

    done = await Migrator(redis, table.keyring, 1.0).migrate(NS, SVC)
    assert (done.moved, done.stale, done.after) == ({1: 100}, 100, LAYOUT)
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 100, 2: 0}

    store = LinkStore(redis, table.keyring)
    eviction = await evict(store, table.keyring.route(NS, SVC), 1, reason="test", rebind_ttl=None)
    assert eviction.removed == 100
    assert await links_by_pod(redis, prefix) == {}
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 0, 2: 0}


async def test_finding_1_eviction_finds_the_old_drivers_users_before_any_migration(redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    old = OldRelease(redis, prefix)
    new_pod = ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix)
    for i in range(100):
        await new_pod.set_linked_pod(f"user-{i}")
        await old.set_linked_pod(f"user-{i}", 1)
    store = LinkStore(redis, table.keyring)
    eviction = await evict(store, table.keyring.route(NS, SVC), 1, reason="test", rebind_ttl=None)
    assert eviction.removed == 100
    assert await links_by_pod(redis, prefix) == {}
    # The stale entries the old driver left under pod 0 went with the move into pod 1's shards.
    assert (await table.snapshot(NS, SVC)).links == {0: 0, 1: 0, 2: 0}


async def old_route(
    redis, prefix: str, users: int = 3000, persistent: int = 600, pods: int = 6
) -> OldRelease:
    """A route the layout-1 release wrote: its operator's table, ``users`` placed by its gateways,
    ``persistent`` of them confirmed by its pods, and its phases (a JSON string)."""
    old = OldRelease(redis, prefix)
    await old.configure(owner="")
    await old.put_pods(dict.fromkeys(range(pods), READY))
    for i in range(users):
        pod = int((await old.place(f"user-{i}"))[0])
        if i < persistent:
            await old.set_linked_pod(f"user-{i}", pod)
    await old.put_phases({2: ",1"})
    return old


@pytest.mark.slow  # seconds of exploration: in make test, not in the fast loop
async def test_finding_2_users_linked_by_the_old_code_are_found_by_hand_off_and_eviction(redis, prefix):
    """Not migrated yet: hand_off_all of pod 1 hands off every user the old code linked there
    (``before`` called for each, none left), and evicting pod 3 removes every link naming it."""
    await old_route(redis, prefix)
    table = RouteTable(redis, prefix=prefix)
    links = await links_by_pod(redis, prefix)
    on_1, on_3 = on_pod(links, 1), on_pod(links, 3)
    assert on_1 == on_3 == 500

    saved: list[str] = []

    async def before(uid: str) -> None:
        saved.append(uid)

    server = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    result = await server.hand_off_all(before=before, within=30)
    assert (result.moved, result.left, result.failed) == (on_1, 0, 0)
    assert len(set(saved)) == on_1
    links = await links_by_pod(redis, prefix)
    assert on_pod(links, 1) == 0

    store = LinkStore(redis, table.keyring)
    eviction = await evict(store, table.keyring.route(NS, SVC), 3, reason="deleted", rebind_ttl=None)
    assert eviction.removed == on_pod(links, 3) >= 500  # its own, and any handed off there
    assert on_pod(await links_by_pod(redis, prefix), 3) == 0


async def test_finding_2_after_migration_counts_are_exact_and_every_user_is_listed(redis, prefix):
    await old_route(redis, prefix)
    table = RouteTable(redis, prefix=prefix)
    assert set((await table.snapshot(NS, SVC)).links.values()) == {0}  # the review's "0 per pod"
    done = await Migrator(redis, table.keyring, 1.0).migrate(NS, SVC)
    assert (done.before, done.after, sum(done.moved.values()), done.phases_converted) == (
        None,
        LAYOUT,
        3000,
        True,
    )
    links = await links_by_pod(redis, prefix)
    assert (await table.snapshot(NS, SVC)).links == {pod: on_pod(links, pod) for pod in range(6)}
    assert sum(v for k, v in links.items() if k.endswith("p")) == 600
    store = LinkStore(redis, table.keyring)
    route_keys = table.keyring.route(NS, SVC)
    for pod in range(6):
        assert len({uid async for uid in store.linked_users(route_keys, pod)}) == on_pod(links, pod)
    assert await table.phases(NS, SVC) == {2: PodPhase(outdated=True)}
    assert not [key async for key in redis.scan_iter(match=f"{prefix}:{{{NS}/{SVC}}}:p:*")]


async def test_finding_3_either_phases_type_is_read(redis, prefix):
    """Layout 1's JSON string is read by today's code (the CLI's ``pods`` uses this read), and the
    operator's next write turns it into the hash."""
    old = await old_route(redis, prefix, users=10, persistent=0)
    table = RouteTable(redis, prefix=prefix)
    assert await table.phases(NS, SVC) == {2: PodPhase(outdated=True)}
    await table.put_phases(NS, SVC, {4: PodPhase(terminating_until=12.5)})
    assert await table.phases(NS, SVC) == {4: PodPhase(terminating_until=12.5)}
    assert await redis.type(old.base + "phase") == b"hash"


async def test_migration_is_idempotent_and_resumable_after_a_crash_at_any_call(redis, prefix):
    """A migration cut off after any number of script calls, then run again, ends as one run does;
    a second run finds nothing to do."""
    await old_route(redis, prefix, users=1500, persistent=300)
    table = RouteTable(redis, prefix=prefix)
    migrator = Migrator(redis, table.keyring, 1.0)
    calls = 0
    crash_at = random.Random(7).randrange(1, 8)

    class Crash(Exception):
        pass

    real = migrator._guard

    async def crashing(call, seconds):
        nonlocal calls
        calls += 1
        if calls == crash_at:
            if asyncio.iscoroutine(call):
                call.close()  # never sent: the crash came first
            raise Crash
        return await real(call, seconds)

    migrator._guard = crashing
    with pytest.raises(Crash):
        await migrator.migrate(NS, SVC)
    migrator._guard = real
    done = await migrator.migrate(NS, SVC)
    assert done.after == LAYOUT
    links = await links_by_pod(redis, prefix)
    assert (await table.snapshot(NS, SVC)).links == {pod: on_pod(links, pod) for pod in range(6)}
    again = await migrator.migrate(NS, SVC)
    assert (again.before, again.after, again.moved, again.stale, again.checked) == (LAYOUT, LAYOUT, {}, 0, 0)


async def test_the_operator_migrates_a_route_when_it_configures_it(redis, prefix, caplog):
    """An operator that starts configures every route it owns: a route of the old release is
    migrated then (counts exact), once per process, and the outcome is kept for its event."""
    old = await old_route(redis, prefix, users=300, persistent=60)
    await redis.hset(old.base + "cfg", "owner", "uid-1")
    told: list[tuple[str, str, str]] = []  # (route, state, event reason) as each was announced
    reconciler = Reconciler(
        redis,
        prefix=prefix,
        on_migration=lambda r, report: told.append((r.name, report.state, report.event()[0])),
    )
    route = RouteRef(NS, SVC, "uid-1", RouteSpec(stateful_set="game", service=SVC))
    caplog.set_level("INFO", logger="stateful_route.operator")
    assert await reconciler.configure(route)
    assert told == [(SVC, "Running", "MigrationStarted"), (SVC, "Succeeded", "Migrated")]
    report = reconciler.migrations[route.key]
    migration = report.migration
    assert migration is not None
    assert (migration.done, sum(migration.moved.values())) == (True, 300)
    assert "Migrated" not in migration.message  # the event's reason says it; the message counts
    assert report.layout == LAYOUT
    status = report.status()
    assert status["state"] == "Succeeded"
    assert "layoutBefore" not in status  # none recorded
    assert (status["layoutAfter"], status["moved"]) == (LAYOUT, 300)
    assert status["startedAt"] <= status["finishedAt"]
    assert "event=migration_progress" in caplog.text
    links = await links_by_pod(redis, prefix)
    assert (await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)).links == {
        p: on_pod(links, p) for p in range(6)
    }
    reconciler.migrations.clear()
    assert await reconciler.configure(route)
    assert reconciler.migrations == {}
    assert len(told) == 2  # once per process


async def test_a_route_already_of_this_layout_reports_its_layout_and_no_migration(redis, prefix):
    told: list[str] = []
    reconciler = Reconciler(redis, prefix=prefix, on_migration=lambda _, report: told.append(report.state))
    route = RouteRef(NS, SVC, "uid-1", RouteSpec(stateful_set="game", service=SVC))
    assert await reconciler.configure(route)  # a new route: written with this layout
    report = reconciler.migrations[route.key]
    assert (report.layout, report.ran, told) == (LAYOUT, False, [])


async def test_a_failed_migration_is_announced_and_reported_then_finished_by_the_retry(redis, prefix):
    """Redis lost in the middle of a migration: the failure is said as it happens and in the
    report the status is written from; the handler's retry migrates the route to the end."""
    old = await old_route(redis, prefix, users=1500, persistent=300)
    await redis.hset(old.base + "cfg", "owner", "uid-1")
    told: list[tuple[str, str]] = []
    reconciler = Reconciler(
        redis, prefix=prefix, on_migration=lambda _, r: told.append((r.state, r.event()[0]))
    )
    route = RouteRef(NS, SVC, "uid-1", RouteSpec(stateful_set="game", service=SVC))
    migrator = reconciler.store.migrator
    real, calls = migrator._guard, 0

    async def lost_at_the_fourth_call(call, seconds):
        nonlocal calls
        calls += 1
        if calls == 4:
            call.close()  # never sent
            raise StoreUnavailable("Redis went away")
        return await real(call, seconds)

    migrator._guard = lost_at_the_fourth_call
    with pytest.raises(StoreUnavailable):
        await reconciler.configure(route)
    assert told == [("Running", "MigrationStarted"), ("Failed", "MigrationFailed")]
    status = reconciler.migrations.pop(route.key).status()
    assert status["state"] == "Failed"
    assert "Redis went away" in status["message"]
    assert "finishedAt" in status
    assert "moved" not in status  # what it did before failing is unknown here: the retry says it
    migrator._guard = real
    assert await reconciler.configure(route)
    assert told[2:] == [("Running", "MigrationStarted"), ("Succeeded", "Migrated")]
    assert reconciler.migrations[route.key].status()["layoutAfter"] == LAYOUT


async def test_migration_online_beside_old_and_new_gateways_and_pods(redis, prefix):
    """The migration runs while old and new gateways place users and old and new pod drivers
    confirm and remove them; once the old ones stop, a last run leaves counts exact and every
    user found by eviction."""
    await old_route(redis, prefix, users=1500, persistent=300)
    table = RouteTable(redis, prefix=prefix)
    old = OldRelease(redis, prefix)
    rnd = random.Random(11)
    stop = asyncio.Event()

    async def churn() -> None:
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            servers = [
                ServerDriver(redis, namespace=NS, service=SVC, pod_index=p, prefix=prefix) for p in range(6)
            ]
            while not stop.is_set():
                uid = f"user-{rnd.randrange(2500)}"
                match rnd.randrange(5):
                    case 0:
                        await old.place(uid)
                    case 1:
                        await old.set_linked_pod(uid, rnd.randrange(6))
                    case 2:
                        await servers[await client.compute_linked_pod(NS, uid, SVC)].set_linked_pod(uid)
                    case 3:
                        await servers[rnd.randrange(6)].remove_linked_pod(uid)
                    case _:
                        await old.remove(uid)

    migrator = Migrator(redis, table.keyring, 1.0)
    async with asyncio.TaskGroup() as tasks:
        worker = tasks.create_task(churn())
        await migrator.migrate(NS, SVC)
        stop.set()
    worker.result()
    # The old writers are gone: `stateful-route migrate` (a full run) moves what they wrote meanwhile
    # and drops the shard entries their removals left after the route was marked.
    await migrator.migrate(NS, SVC, full=True)
    links = await links_by_pod(redis, prefix)
    assert (await table.snapshot(NS, SVC)).links == {p: on_pod(links, p) for p in range(6)}
    store = LinkStore(redis, table.keyring)
    for pod in range(6):
        await evict(store, table.keyring.route(NS, SVC), pod, reason="test", rebind_ttl=None)
    assert await links_by_pod(redis, prefix) == {}
    assert set((await table.snapshot(NS, SVC)).links.values()) == {0}
