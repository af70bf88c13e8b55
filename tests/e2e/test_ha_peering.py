"""Two operators with kopf peering, each in its own thread and event loop like two replicas:
the higher priority acts, the other waits; stopping the active one hands over, and no pod is
evicted twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.local_redis import free_port
from stateful_route.testing.sim import NS, ROUTE, operator_thread
from tests.e2e.test_metrics import scrape
from tests.e2e.test_route_lifecycle import wait_for_table
from tests.routes import poll_until

PEERING = "stateful-route"


async def evictions(cluster) -> list[tuple[int, int, int]]:
    """(pod, removed, rebound) of every Evicted event, in pod order."""
    found = []
    for event in await cluster.events():
        if event.get("reason") == "Evicted":
            match = re.fullmatch(
                r"evicted (\d+) links from pod (\d+): deleted; rebound (\d+)", event["message"]
            )
            assert match, event["message"]
            removed, pod, rebound = map(int, match.groups())
            found.append((pod, removed, rebound))
    return sorted(found)


async def test_one_operator_acts_and_a_standby_takes_over_without_double_eviction(
    cluster, redis, redis_url, prefix
):
    await cluster.create_peering(PEERING)
    await cluster.start(4, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    options = {"peering": PEERING, "reconcile_interval": 0.5}
    async with contextlib.AsyncExitStack() as replicas:
        await replicas.enter_async_context(
            operator_thread(cluster, redis_url, prefix, priority=100, **options)
        )
        await wait_for_table(table, [0, 1, 2, 3])
        # The standby starts once the active one is up: it pauses before it acts.
        standby = operator_thread(cluster, redis_url, prefix, priority=10, **options)
        async with standby as waiting:
            async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
                for i in range(400):
                    await client.compute_linked_pod(NS, f"user-{i}", ROUTE)
            await cluster.delete_pod(3)

            async def evicted(count: int) -> bool:
                return len(await evictions(cluster)) >= count

            await poll_until(lambda: evicted(1), within=10, every=0.1)
            await asyncio.sleep(2)  # room for a second, wrongful eviction by the standby
            assert await evictions(cluster) == [(3, 100, 100)]

            # The active replica leaves (it removes itself from the peering); the standby resumes.
            await replicas.aclose()
            assert waiting.is_alive()

            async def only_the_standby_left() -> bool:
                peering = await cluster.peering(PEERING)
                return [p["priority"] for p in (peering.get("status") or {}).values() if p] == [10]

            await poll_until(only_the_standby_left, within=5, every=0.05)
            # kmock does not replay events between a list and the watch that follows it (a real API
            # server does), so give the resumed replica a moment to be watching again.
            await asyncio.sleep(1.5)
            await cluster.delete_pod(2)
            await poll_until(lambda: evicted(2), within=15, every=0.1)
            await asyncio.sleep(2)
            (pod, removed, rebound), first = await evictions(cluster)  # one event per deleted pod (sorted)
            assert first == (3, 100, 100)
            assert pod == 2
            assert removed == rebound
            assert 130 <= removed <= 136  # its 100 and its share of pod 3's
            snapshot = await table.snapshot(NS, ROUTE)
            assert sorted(snapshot.pods) == [0, 1]
            assert sum(snapshot.links.values()) == 400


def per_pod_links(port: int) -> dict[str, float]:
    return {
        dict(labels)["pod"]: v for (name, labels), v in scrape(port).items() if name == "stateful_route_links"
    }


def last_reconciled(port: int) -> float:
    """When the replica serving metrics on ``port`` last reconciled the route."""
    name = "stateful_route_last_reconcile_timestamp_seconds"
    (found,) = [v for (series, _), v in scrape(port).items() if series == name]
    return found


async def test_a_paused_replica_exports_no_per_pod_series(cluster, redis, redis_url, prefix):
    """docs/operations.md's ``sum by (pod) (stateful_route_links)`` over every scraped replica must equal
    the active replica's numbers: the paused one's frozen gauges would double them."""
    await cluster.create_peering(PEERING)
    await cluster.start(2)
    table = RouteTable(redis, prefix=prefix)
    ports = free_port(), free_port()
    options = {"peering": PEERING, "reconcile_interval": 0.3}
    async with operator_thread(cluster, redis_url, prefix, priority=10, metrics_port=ports[0], **options):
        await wait_for_table(table, [0, 1])
        await poll_until(lambda: asyncio.to_thread(lambda: per_pod_links(ports[0]) != {}), within=5)
        # A replica of higher priority arrives: the first one pauses.
        async with operator_thread(
            cluster, redis_url, prefix, priority=100, metrics_port=ports[1], **options
        ):
            async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
                for i in range(10):
                    await client.compute_linked_pod(NS, f"user-{i}", ROUTE)

            async def summed() -> bool:
                both = [await asyncio.to_thread(per_pod_links, port) for port in ports]
                total = {pod: sum(found.get(pod, 0) for found in both) for pod in ("0", "1")}
                return both[0] == {} and total == {"0": 5, "1": 5}

            await poll_until(summed, within=10, every=0.2)
            # StatefulRouteOperatorNotReconciling reads the newest time over every replica: the
            # paused one's stands still, the active one's keeps it fresh.
            paused, active = [await asyncio.to_thread(last_reconciled, port) for port in ports]
            await asyncio.sleep(1)  # three reconcile intervals
            assert await asyncio.to_thread(last_reconciled, ports[0]) == paused
            assert await asyncio.to_thread(last_reconciled, ports[1]) > active


def start_operator(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`stateful-route operator` logged in to the emulator; only for runs that must end by themselves."""
    argv = [str(Path(sys.executable).with_name("stateful-route")), "operator", "--kubeconfig",
            str(cluster.kubeconfig), "--metrics-port", "0", "--peering", PEERING, *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


async def test_an_operator_whose_peering_object_is_missing_exits_2_naming_it(cluster):
    # kopf would wait for the missing object forever, without a word.
    result = await asyncio.to_thread(start_operator, cluster, "--namespace", NS)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"no KopfPeering '{PEERING}' in namespace '{NS}'" in line, line
    assert "Traceback" not in result.stderr

    result = await asyncio.to_thread(start_operator, cluster, "--namespace", NS, "--log-format", "json")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert (entry["event"], entry["field"], entry["level"]) == ("invalid_option", "peering", "error")
    assert "KopfPeering" in entry["error"]

    result = await asyncio.to_thread(start_operator, cluster, "--all-namespaces")
    assert result.returncode == 2, result.stderr
    assert f"no ClusterKopfPeering '{PEERING}'" in result.stderr, result.stderr
