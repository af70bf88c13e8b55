"""The route mirror's work is bounded (issue 21, findings 2 and 3).

2. It followed every name it was ever asked about, forever, route or not: 5,000 unknown names
   gave 5,001 views and an idle gateway then sent 20,847 commands a second. Now a name without a
   table gets no view (its lookups answer as for any missing table), a route nobody asks about
   is forgotten, at most ``max_routes`` are followed, and an idle gateway reads each followed
   route's version twice a second (MGETs) and its snapshot (an EVALSHA of SNAPSHOT) when the
   version moved or on the route's turn, and nothing else. Counted by Redis itself (INFO
   commandstats), on a private server.
3. Each table-change message cost one snapshot read, in series with the channel, so a flood
   left gateways seconds behind. Now messages apply their routability at once and superseded
   ones coalesce: a burst about one route costs a few reads, not one per message.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from stateful_route import ClientDriver, NoAvailablePod, PodState, RouteTable
from stateful_route.gateway.client import ROUTE_IDLE
from stateful_route.gateway.metrics import PrometheusClientMetrics
from tests.routes import NS, SVC, make_route, poll_until

UNKNOWN = 300


async def commands_sent(redis: aioredis.Redis) -> int:
    """EVALSHA and MGET calls so far: on this client-free server, the mirror's snapshot and version
    reads (commandstats counts the commands scripts run apart, so they are not summed here)."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "mget"))


@pytest.fixture
def alone(private_redis, make_redis) -> aioredis.Redis:
    """A client of a Redis nobody else uses, so its command counts are the test's alone."""
    return make_redis(private_redis().url)


async def test_unknown_names_get_no_view_and_cost_nothing_once_idle(alone, make_redis, prefix):
    redis = alone
    await make_route(redis, prefix, pods=2)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        for i in range(UNKNOWN):
            with pytest.raises(NoAvailablePod):
                await client.compute_linked_pod(NS, "u", f"nothing-{i}")
        assert await client.routable_pods(NS, "nothing-0") == []
        assert await client.best_pod(NS, "nothing-0") is None
        assert await client.is_pod_routable(NS, "nothing-0", 0) is False
        assert client._mirror.views[NS] == {}
        assert len(client._mirror.followed) == 0

        await client.compute_linked_pod(NS, "u", SVC)  # one real route, followed
        assert set(client._mirror.views[NS]) == {SVC}
        await redis.config_resetstat()
        await asyncio.sleep(2.0)
        # Idle: the one followed route's version read every refresh_interval (0.5 s), its
        # snapshot at most as often, nothing else, so O(1) commands a second per route whatever
        # was asked before (with a margin for a late loop on a busy machine; before the fix, over
        # 1,000 here).
        assert await commands_sent(redis) <= 2 * 2 * 2.0 + 2


async def test_a_route_nobody_asks_about_is_forgotten_and_then_costs_nothing(alone, prefix):
    redis = alone
    await make_route(redis, prefix, pods=2)
    now = [1000.0]
    async with ClientDriver(redis, namespace=NS, prefix=prefix, clock=lambda: now[0]) as client:
        assert await client.compute_linked_pod(NS, "u", SVC) in (0, 1)
        assert SVC in client._mirror.views[NS]
        keep = max(client.cache_ttl, ROUTE_IDLE)
        now[0] += keep - 1
        await asyncio.sleep(0.7)  # a refresh pass: not yet
        assert SVC in client._mirror.views[NS]
        now[0] += 2
        await poll_until(lambda: asyncio.sleep(0, SVC not in client._mirror.views[NS]), within=2)
        # The cached link expired with it (the cache's TTL is at most ``keep``).
        assert client.get_linked_in_cache(NS, "u", SVC) is None
        await redis.config_resetstat()
        await asyncio.sleep(1.2)
        assert await commands_sent(redis) == 0
        # Asked again, it is read and followed again.
        assert await client.routable_pods(NS, SVC) == [0, 1]
        assert SVC in client._mirror.views[NS]


async def test_views_are_bounded_and_a_deleted_route_loses_its_view(redis, prefix):
    table = RouteTable(redis, prefix=prefix)
    services = [f"svc-{i}" for i in range(5)]
    for service in services:
        await table.put_pods(NS, service, [PodState(0), PodState(1)])
    async with ClientDriver(redis, namespace=NS, prefix=prefix, max_routes=3) as client:
        for service in services:
            await client.compute_linked_pod(NS, "u", service)
            assert len(client._mirror.views[NS]) <= 3
        assert set(client._mirror.views[NS]) == set(services[2:])  # the least recently asked go
        # An evicted route's cached links go with its view (a view read later could not tell
        # whether Redis lost them meanwhile); a followed route's stay.
        assert client.get_linked_in_cache(NS, "u", services[0]) is None
        await client.compute_linked_pod(NS, "u", services[4])
        assert client.get_linked_in_cache(NS, "u", services[4]) is not None

        await table.delete(NS, services[4])
        await poll_until(lambda: asyncio.sleep(0, services[4] not in client._mirror.views[NS]), within=2)
        with pytest.raises(NoAvailablePod):
            await client.compute_linked_pod(NS, "u", services[4])
        assert services[4] not in client._mirror.views[NS]


async def test_a_burst_of_table_changes_costs_a_few_reads_and_ends_on_the_latest(redis, make_redis, prefix):
    table = await make_route(redis, prefix, pods=3)
    writer = RouteTable(make_redis(blocking_pool=64), prefix=prefix)
    registry = CollectorRegistry()
    metrics = PrometheusClientMetrics(registry)
    burst = 300
    async with ClientDriver(make_redis(), namespace=NS, prefix=prefix, metrics=metrics) as client:
        await asyncio.wait_for(client.subscribed.wait(), 2)
        first = (await client.route_view(NS, SVC)).version
        mirror = client._mirror
        reads = mirror.reads
        await asyncio.gather(*(writer.update_pod(NS, SVC, PodState(2, load=i + 1)) for i in range(burst)))
        latest = first + burst

        async def caught_up() -> bool:
            view = mirror.views[NS][SVC]
            return view.version == latest and not view.partial

        await poll_until(caught_up, within=2)
        # One read per message would be 300; coalesced, a few (the reads that were under way
        # while messages arrived, and perhaps a periodic one).
        assert mirror.reads - reads <= 12, mirror.reads - reads
        view = await client.route_view(NS, SVC)
        assert view.snapshot.pods == (await table.snapshot(NS, SVC)).pods
    # Every message's routability was applied, and its lag observed; whole views less often.
    assert registry.get_sample_value("stateful_route_client_change_lag_seconds_count") == burst
    assert 1 <= registry.get_sample_value("stateful_route_client_view_lag_seconds_count") <= 12
