"""The mirror's full pass over many routes (issue 21: 10,000 routes took 1.7 s, the promise is 0.5 s).

A pass now runs two round trips at once and does not decode a snapshot that is the same as the
route's last one. What must not change: every followed route is re-read on every pass, a change
that no message announced (a lost message) shows after one pass however many routes are
unchanged, and routes beyond the memo's size read right. Timing is figure 15's business
(bench/mirror.py), not this file's.
"""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import ClientDriver, InvalidInput, PodState, RouteTable
from stateful_route.store.keys import Keyring
from tests.routes import NS, poll_until

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


async def test_a_pass_rereads_every_route_and_finds_a_change_no_message_announced(
    redis, make_redis, prefix, services
):
    table = RouteTable(redis, prefix=prefix, timeout=10)
    await write_routes(table, services)
    metrics = Passes()
    async with ClientDriver(
        make_redis(), namespace=NS, prefix=prefix, max_routes=ROUTES, metrics=metrics, timeout=10
    ) as client:
        for start in range(0, ROUTES, 50):
            await asyncio.gather(*(client.route_view(NS, s) for s in services[start : start + 50]))
        mirror = client._mirror
        views = mirror.views[NS]
        assert len(views) == ROUTES
        untouched, changed = services[1], services[ROUTES - 3]
        before = views[untouched]

        # A change whose message was lost: the table rewritten behind the scripts' back (no
        # version bump, no message), pod 1 now Shutdown with a load.
        route_keys = Keyring(prefix).route(NS, changed)
        await redis.hset(route_keys.pods, "1", "1,0,2,7")
        reads = mirror.reads

        async def shown() -> bool:
            view = views[changed]
            return view.routable == frozenset({0}) and view.snapshot.pods[1].load == 7

        await poll_until(shown, within=5)
        # Every route was re-read (not only the changed one), each view's age renewed; the
        # unchanged ones keep the snapshot decoded before.
        await poll_until(lambda: asyncio.sleep(0, mirror.reads - reads >= 2 * ROUTES), within=5)
        after = views[untouched]
        assert after.valid_until > before.valid_until
        assert after.snapshot is before.snapshot
        assert after.snapshot == (await table.snapshot(NS, untouched))
        assert views[changed].snapshot == (await table.snapshot(NS, changed))
    assert len(metrics.passes) >= 2
    assert all(seconds > 0 for seconds in metrics.passes)


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
