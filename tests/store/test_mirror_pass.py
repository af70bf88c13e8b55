"""The mirror's full pass over many routes (issue 21: 10,000 routes took 1.7 s, the promise is 0.5 s).

A pass reads every followed route's version and re-reads the snapshots of the routes whose
version moved, plus each route's snapshot on its turn (one pass in ``_SNAPSHOT_EVERY``). What
must hold: a change whose message was lost is never answered from past ``max_age`` (every change
of routability bumps the version), counts and the best pod are never answered older than
``max_age`` either (a call that needs them re-reads a snapshot that old), a change no version
shows is still read within the snapshot period, and routes beyond the memo's size read right.
Timing is figure 15's business (bench/mirror.py), not this file's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from stateful_route import ClientDriver, InvalidInput, PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.gateway.mirror import _SNAPSHOT_EVERY
from stateful_route.store.keys import Keyring
from tests.routes import NS, SVC, poll_until

# More routes than two round trips carry (256 each), so a pass needs several of each trip.
ROUTES = 700


class Passes:
    """Client metrics keeping the mirror's full passes (the optional ``mirror_pass`` hook)."""

    def __init__(self) -> None:
        self.passes: list[float] = []

    def cache_hit(self) -> None: ...

    def cache_miss(self) -> None: ...

    def redis_call(self, seconds: float) -> None: ...

    def mirror_pass(self, seconds: float) -> None:
        self.passes.append(seconds)


@pytest.fixture
def services() -> list[str]:
    return [f"svc-{i}" for i in range(ROUTES)]


async def write_routes(table: RouteTable, services: list[str]) -> None:
    for start in range(0, len(services), 100):
        part = services[start : start + 100]
        await asyncio.gather(*(table.put_pods(NS, s, [PodState(0), PodState(1)]) for s in part))


async def test_a_pass_reads_versions_renews_routability_and_spreads_snapshot_reads(
    private_redis, make_redis, prefix, services
):
    server = private_redis()  # nobody else's commands in its counts
    redis = make_redis(server.url)
    table = RouteTable(redis, prefix=prefix, timeout=10)
    await write_routes(table, services)
    metrics = Passes()
    async with ClientDriver(
        make_redis(server.url),
        namespace=NS,
        prefix=prefix,
        max_routes=ROUTES,
        metrics=metrics,
        timeout=10,
        refresh_interval=0.1,  # a snapshot period of 1 s keeps the test short
        max_age=0.3,
    ) as client:
        for start in range(0, ROUTES, 50):
            await asyncio.gather(*(client.route_view(NS, s) for s in services[start : start + 50]))
        mirror = client._mirror
        views = mirror.views[NS]
        assert len(views) == ROUTES
        first = dict(views)
        await poll_until(lambda: asyncio.sleep(0, len(metrics.passes) >= 1), within=5)
        passes, reads, probes = len(metrics.passes), mirror.reads, mirror.probes
        await redis.config_resetstat()
        # Every pass reads every route's version; a snapshot only on its turn (one pass in
        # _SNAPSHOT_EVERY, spread by route) or when its version moved (none did here).

        async def every_turn_came() -> bool:
            return all(views[s].whole_until > first[s].whole_until for s in services)

        await poll_until(every_turn_came, within=10, every=0.05)
        done = len(metrics.passes) - passes
        assert done >= 2
        # (a pass counted here may have read its versions before the counts were taken)
        assert mirror.probes - probes >= (done - 1) * ROUTES
        snapshots, most = mirror.reads - reads, ROUTES * (done / _SNAPSHOT_EVERY + 2)
        assert ROUTES <= snapshots <= most, (snapshots, done)
        stats = await redis.info("commandstats")
        assert int(stats["cmdstat_evalsha"]["calls"]) <= most  # as Redis counts them
        # One MGET of versions per 1,000 routes a pass: O(1) commands a second per route, in all.
        assert int(stats["cmdstat_mget"]["calls"]) <= done + 2
        for service in services:
            view, before = views[service], first[service]
            assert view.valid_until > before.valid_until
            assert view.snapshot is before.snapshot  # unchanged: not decoded again


async def test_a_change_whose_message_was_lost_is_never_answered_past_max_age(make_redis, prefix):
    """Seeded random changes (a pod NotReady, Shutdown by its own report, removed, added, a load)
    to random routes of a client whose change messages are lost (it unsubscribed): at max_age
    after each change, every view either shows it or can no longer be used; and a pass shows
    each change soon after (by its version)."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    routes = [f"svc-{i}" for i in range(40)]
    redis = make_redis()
    table = RouteTable(redis, prefix=prefix)
    pods: dict[str, dict[int, PodState]] = {s: {i: PodState(i) for i in range(3)} for s in routes}
    for service in routes:
        await table.put_pods(NS, service, list(pods[service].values()))
    async with ClientDriver(
        make_redis(), namespace=NS, prefix=prefix, refresh_interval=0.2, max_age=0.5
    ) as client:
        for service in routes:
            await client.route_view(NS, service)
        mirror = client._mirror
        assert mirror._pubsub is not None
        await mirror._pubsub.unsubscribe()  # every message from here on is lost to this client
        max_age = mirror._max_age
        for _ in range(4):
            changed = rng.sample(routes, 5)
            for service in changed:
                table_pods = pods[service]
                index = rng.choice(sorted(table_pods))
                how = rng.choice(["not ready", "shutdown", "remove", "add", "load"])
                if how == "not ready":
                    table_pods[index] = PodState(index, ready=False)
                    await table.update_pod(NS, service, table_pods[index])
                elif how == "shutdown":
                    pod = ServerDriver(redis, namespace=NS, service=service, pod_index=index, prefix=prefix)
                    await pod.set_routing_state(RoutingState.SHUTDOWN)
                elif how == "remove" and len(table_pods) > 1:
                    del table_pods[index]
                    await table.remove_pod(NS, service, index)
                elif how == "add":
                    added = max(table_pods) + 1
                    table_pods[added] = PodState(added)
                    await table.update_pod(NS, service, table_pods[added])
                else:
                    table_pods[index] = dataclasses.replace(table_pods[index], load=rng.randrange(1, 100))
                    await table.update_pod(NS, service, table_pods[index])
            written = asyncio.get_running_loop().time()
            snapshots = await table.snapshots([(NS, s) for s in routes])
            truth = {s: snapshot.routable for s, snapshot in zip(routes, snapshots, strict=True)}
            await asyncio.sleep(max(0.0, written + max_age - asyncio.get_running_loop().time()))
            now = client._clock()
            for service in routes:
                # What the hit path answers from: a view still usable shows the change.
                view = mirror.views[NS][service]
                assert view.valid_until <= now or view.routable == truth[service], (seed, service)

            async def shown(truth: dict[str, frozenset[int]] = truth) -> bool:
                views = mirror.views[NS]  # renewed by passes alone: nothing here asks Redis
                now = client._clock()
                return all(views[s].routable == truth[s] and views[s].valid_until > now for s in routes)

            await poll_until(shown, within=3)


async def test_a_change_no_version_shows_is_read_on_the_routes_snapshot_turn(redis, make_redis, prefix):
    """A table written behind the scripts' back (no version bump, no message) is not what a pass
    looks for, but each route's snapshot is re-read at least every _SNAPSHOT_EVERY passes."""
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(0), PodState(1)])
    interval = 0.05
    async with ClientDriver(
        make_redis(), namespace=NS, prefix=prefix, refresh_interval=interval, max_age=2 * interval
    ) as client:
        views = client._mirror.views[NS]
        await client.route_view(NS, SVC)
        await redis.hset(Keyring(prefix).route(NS, SVC).pods, "1", "1,0,2,7")  # pod 1 Shutdown

        async def shown() -> bool:
            view = views[SVC]
            return view.routable == frozenset({0}) and view.snapshot.pods[1].load == 7

        await poll_until(shown, within=_SNAPSHOT_EVERY * interval + 2.0)


async def test_counts_and_the_best_pod_are_never_answered_older_than_max_age(redis, make_redis, prefix):
    """Placements change link counts and the best pod without a new version: the whole view a
    call answers from (route_view, best_pod, is_pod_available) is re-read once its snapshot is
    older than max_age, however often its version was checked meanwhile."""
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(0), PodState(1, load=5)])
    async with (
        ClientDriver(make_redis(), namespace=NS, prefix=prefix) as a,
        ClientDriver(make_redis(), namespace=NS, prefix=prefix) as b,
    ):
        max_age = a._mirror._max_age
        assert await a.best_pod(NS, SVC) == 0
        for i in range(10):  # onto pod 0 (load 0) until its score passes pod 1's
            await b.compute_linked_pod(NS, f"u{i}", SVC)
        placed = asyncio.get_running_loop().time()
        truth = await table.snapshot(NS, SVC)
        assert truth.best == 1
        assert truth.version == (await a.route_view(NS, SVC)).version  # placements bump none
        await asyncio.sleep(max(0.0, placed + max_age - asyncio.get_running_loop().time()))
        view = await a.route_view(NS, SVC)
        assert view.whole_until > a._clock()
        assert view.valid_until > a._clock()
        assert view.snapshot.links == truth.links
        assert await a.best_pod(NS, SVC) == 1


async def test_snapshots_of_more_routes_than_the_memo_holds_read_right(redis, prefix, services):
    """A reader memoises keys and decoded snapshots of ``routes`` routes; beyond that it must still
    answer right (and a changed route is decoded again, never served from the memo)."""
    some = services[:12]
    writer = RouteTable(redis, prefix=prefix)
    await write_routes(writer, some)
    reader = RouteTable(redis, prefix=prefix, routes=4)
    routes = [(NS, s) for s in some]
    first = await reader.snapshots(routes)
    assert first == [await writer.snapshot(NS, s) for s in some]
    await writer.update_pod(NS, some[0], PodState(1, load=5))
    again = await reader.snapshots(routes)
    assert again[0].pods[1].load == 5
    assert again[1:] == first[1:]
    with pytest.raises(InvalidInput, match="routes"):
        RouteTable(redis, prefix=prefix, routes=0)
