"""The operator converges after restarts, survives handler failures without losing links, and
keeps its hands off what is not its own."""

from __future__ import annotations

import asyncio

from stateful_route import ClientDriver, RouteTable
from stateful_route.controller import pods
from stateful_route.store.keys import changes_channel
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.e2e.test_route_lifecycle import status_of, wait_for_table
from tests.routes import poll_until


async def test_a_restarted_operator_converges_and_a_second_run_changes_nothing(
    cluster, redis, make_redis, redis_url, prefix
):
    await cluster.start(4, unroutableGraceSeconds=1, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2, 3])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(400):
                await client.compute_linked_pod(NS, f"u{i}", ROUTE)

    # While no operator runs: a pod is deleted, one turns NotReady, one is drained.
    await cluster.delete_pod(3)
    await cluster.set_ready(2, False)
    await cluster.annotate(0, "DenyNewCall")
    assert sorted((await table.snapshot(NS, ROUTE)).pods) == [0, 1, 2, 3]

    async with operator(cluster, redis_url, prefix):

        async def converged() -> bool:
            s = await table.snapshot(NS, ROUTE)
            return sorted(s.pods) == [0, 1, 2] and s.available == {1} and s.links[2] == 0

        await poll_until(converged, within=10, every=0.05)
        await asyncio.sleep(1.5)  # let the last removals and the status mirror land
        settled = await table.snapshot(NS, ROUTE)
        assert sum(settled.links.values()) == 400  # evicted users were rebound, none lost
        events = len(await cluster.events())

    # Nothing changed since: a second run writes nothing, publishes nothing, evicts nothing.
    listener = make_redis().pubsub()
    await listener.subscribe(changes_channel(prefix, NS))
    async with operator(cluster, redis_url, prefix):
        await asyncio.sleep(3)
    published = []
    while (message := await listener.get_message(ignore_subscribe_messages=True, timeout=0.1)) is not None:
        published.append(message)
    await listener.aclose()
    assert published == []
    assert await table.snapshot(NS, ROUTE) == settled
    assert len(await cluster.events()) == events


async def test_a_failed_handler_loses_no_links_and_is_retried(cluster, make_redis, private_redis, prefix):
    # A private server: pausing writes must not stall other suites sharing the machine's Redis.
    redis_url = private_redis().url
    redis = make_redis(redis_url)
    await cluster.start(3, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, redis_timeout=0.3):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            for i in range(90):
                await client.compute_linked_pod(NS, f"u{i}", ROUTE)
        # Redis refuses writes for 2 s: the handlers reacting to the deletion fail meanwhile.
        await redis.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
        await cluster.delete_pod(1)
        await asyncio.sleep(1)
        assert (await table.snapshot(NS, ROUTE)).links == {0: 30, 1: 30, 2: 30}

        async def healed() -> bool:
            s = await table.snapshot(NS, ROUTE)
            return sorted(s.pods) == [0, 2] and sum(s.links.values()) == 90

        await poll_until(healed, within=8, every=0.1)


async def test_deleting_a_route_removes_its_table_and_links(cluster, redis, redis_url, prefix):
    await cluster.start(2)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            await client.compute_linked_pod(NS, "u", ROUTE)
            await cluster.delete_route()

            async def gone() -> bool:
                # The table goes first, then the links (a sweep of the route's keys), then the
                # service leaves its namespace's set.
                return (
                    not (await table.snapshot(NS, ROUTE)).pods
                    and await client.get_linked_pod_not_cache(NS, "u", ROUTE) is None
                    and await table.services(NS) == []
                )

            await poll_until(gone, within=5, every=0.05)


async def test_pods_are_only_read_never_written(cluster, redis, redis_url, prefix):
    await cluster.start(2)
    await cluster.annotate(1, "Drain-Please")  # malformed: ignored with a warning event
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1])
        await cluster.delete_pod(0)
        await wait_for_table(table, [1])

        async def warned() -> bool:
            return any(e.get("reason") == "BadRoutingState" for e in await cluster.events())

        async def mirrored() -> bool:
            return (await status_of(cluster)).get("summary") == "1/1"

        await poll_until(warned, within=5, every=0.1)
        await poll_until(mirrored, within=5, every=0.1)
    pod_writes = [
        r for r in cluster.api
        if r.resource is not None and r.resource.plural == "pods" and r.method.value not in ("GET",)
    ]  # fmt: skip
    # Only the test itself (as kubectl/kubelet) wrote to pods: the annotate and the delete.
    assert [(r.method.value, r.name) for r in pod_writes] == [
        ("POST", None),
        ("POST", None),
        ("PATCH", "game-1"),
        ("DELETE", "game-0"),
    ]


async def test_the_operator_rebuilds_the_table_when_redis_comes_back_empty(
    cluster, make_redis, private_redis, prefix
):
    server = private_redis()
    redis = make_redis(server.url)
    await cluster.start(3, maxLinksPerPod=500)
    table = RouteTable(redis, prefix=prefix, timeout=0.5)
    async with operator(cluster, server.url, prefix, redis_timeout=0.5, reconcile_interval=0.5):
        await wait_for_table(table, [0, 1, 2])
        server.stop()
        await asyncio.sleep(1.5)  # handlers fail meanwhile; kopf retries them
        await asyncio.to_thread(server.start)  # empty: it keeps nothing
        await cluster.set_ready(1, False)  # and the cluster moved on while Redis was away

        async def rebuilt() -> bool:
            try:
                s = await table.snapshot(NS, ROUTE)
            except Exception:
                return False
            return sorted(s.pods) == [0, 1, 2] and s.available == {0, 2}  # 1 is NotReady

        await poll_until(rebuilt, within=10, every=0.1)
        # The route's policy came back with the table: a pod at the cap takes no new users.
        assert await redis.hget(table.keyring.route(NS, ROUTE).config, "cap") == b"500"


async def test_a_route_deleted_and_created_again_with_the_same_name_gets_a_status(
    cluster, redis, redis_url, prefix
):
    await cluster.start(2)
    table = RouteTable(redis, prefix=prefix)

    async def mirrored() -> bool:
        return (await status_of(cluster)).get("summary") == "2/2"

    async with operator(cluster, redis_url, prefix, status_interval=0.2):
        await wait_for_table(table, [0, 1])
        await poll_until(mirrored, within=5, every=0.1)
        await cluster.delete_route()

        async def recreated() -> bool:
            try:
                await cluster.create_route()  # refused while the old object still exists
            except Exception:
                return False
            return True

        await poll_until(recreated, within=5, every=0.1)
        await poll_until(mirrored, within=5, every=0.1)


async def test_a_pod_that_turned_not_ready_while_the_operator_was_down_gets_only_the_rest_of_its_grace(
    cluster, redis, redis_url, prefix
):
    """Its grace is counted from its Ready condition's lastTransitionTime (the end of that
    second), not from the operator's return: the note kept in Redis says so."""
    await cluster.start(3, unroutableGraceSeconds=60)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2])
    await cluster.set_ready(1, False, stamped=True)
    body = await cluster.pod(1)
    turned = pods.timestamp(body["status"]["conditions"][0]["lastTransitionTime"])
    assert turned is not None
    await asyncio.sleep(2)  # the operator is down for longer than the timestamp's precision
    async with operator(cluster, redis_url, prefix):

        async def noted() -> bool:
            return not (await table.instances(NS, ROUTE))[1].endswith(",r")

        await poll_until(noted, within=5, every=0.05)
        note = (await table.instances(NS, ROUTE))[1].rpartition(",")[2]
        assert int(note) == round((turned + 1) * 1000)
        assert 1 in (await table.snapshot(NS, ROUTE)).routable  # within its grace still
