"""The operator when Redis fails: every fault is counted, and the route's status says so."""

from __future__ import annotations

import asyncio

import pytest

from stateful_route import RouteTable
from stateful_route.testing.local_redis import PrivateCluster, free_port
from stateful_route.testing.sim import operator
from tests.e2e.test_metrics import scrape
from tests.e2e.test_route_lifecycle import status_of, wait_for_table
from tests.routes import poll_until


def redis_errors(port: int) -> float:
    return sum(v for (name, _), v in scrape(port).items() if name == "stateful_route_redis_errors_total")


@pytest.mark.cluster
async def test_faults_of_a_down_redis_cluster_are_counted_as_redis_errors(
    cluster, private_cluster: PrivateCluster, prefix
):
    await cluster.start(2)
    private_cluster.stop()
    port = free_port()
    async with operator(cluster, private_cluster.url, prefix, metrics_port=port, redis_timeout=0.5):

        async def counted() -> bool:
            return await asyncio.to_thread(redis_errors, port) >= 2

        await poll_until(counted, within=10, every=0.2)


async def test_the_status_says_when_the_operator_cannot_reach_redis(
    cluster, private_redis, make_redis, prefix
):
    server = private_redis()
    await cluster.start(2)
    table = RouteTable(make_redis(server.url), prefix=prefix)

    async def condition() -> dict[str, str]:
        conditions = (await status_of(cluster)).get("conditions") or [{}]
        return dict(conditions[0])

    async with operator(cluster, server.url, prefix, redis_timeout=0.3, status_interval=0.2):
        await wait_for_table(table, [0, 1])
        await poll_until(lambda: _is(condition, "True", "PodsAvailable"), within=5, every=0.1)
        server.stop()
        await poll_until(lambda: _is(condition, "False", "RedisUnavailable"), within=5, every=0.1)
        assert "redis" in (await condition())["message"].lower()
        await asyncio.to_thread(server.start)  # back, empty: the operator rebuilds the table
        await poll_until(lambda: _is(condition, "True", "PodsAvailable"), within=5, every=0.1)


async def _is(condition, status: str, reason: str) -> bool:  # type: ignore[no-untyped-def]
    found = await condition()
    return bool(found.get("status") == status and found.get("reason") == reason)
