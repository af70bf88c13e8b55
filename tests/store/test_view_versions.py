"""Redis losing its data makes a route's version go back; the client must follow, never answer
from a view older than ``max_age``, and forget the links it cached (issue 11, point 8)."""

from __future__ import annotations

from stateful_route import ClientDriver, PodState, RouteTable
from tests.routes import NS, SVC, poll_until


async def test_a_version_that_goes_back_is_followed_within_max_age(make_redis, private_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url)
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(i) for i in range(3)])
    for load in range(1, 10):  # version 10
        await table.update_pod(NS, SVC, PodState(2, load=load))
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as a:
        assert (await a.route_view(NS, SVC)).version == 10
        assert await a.compute_linked_pod(NS, "u", SVC) == 0
        assert await a.get_linked_pod(NS, "u", SVC) == 0

        await redis.flushall()  # a private server: Redis loses everything, connections stay up
        # The operator writes the table again, from version 1; pod 1 is gone meanwhile.
        await table.put_pods(NS, SVC, [PodState(0, load=50), PodState(2)])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as b:
            assert await b.compute_linked_pod(NS, "u", SVC) == 2

            async def a_follows() -> bool:
                return (
                    await a.routable_pods(NS, SVC) == [0, 2]
                    and await a.get_linked_pod(NS, "u", SVC) == 2
                    and await a.compute_linked_pod(NS, "u", SVC) == 2
                )

            await poll_until(a_follows, within=1.5)  # max_age, and time to ask on a busy machine
        assert (await a.route_view(NS, SVC)).version == 1
        assert await a.is_pod_routable(NS, SVC, 1) is False


async def test_data_loss_is_noticed_when_the_version_comes_back_equal(make_redis, private_redis, prefix):
    server = private_redis()
    redis = make_redis(server.url)
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(0), PodState(1)])  # version 1, never changed
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as a:
        assert await a.compute_linked_pod(NS, "u", SVC) == 0
        await redis.flushall()
        await table.put_pods(NS, SVC, [PodState(0, load=50), PodState(1)])  # version 1 again
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as b:
            assert await b.compute_linked_pod(NS, "u", SVC) == 1

            async def a_follows() -> bool:
                return (
                    await a.get_linked_pod(NS, "u", SVC) == 1
                    and await a.compute_linked_pod(NS, "u", SVC) == 1
                )

            await poll_until(a_follows, within=1.0)
