"""The emulated cluster deletes pods gracefully and rolls a StatefulSet the way Kubernetes does."""

from __future__ import annotations

import asyncio
import time

from stateful_route.core.constants import REVISION_LABEL
from stateful_route.testing.sim import Cluster


async def exists(cluster: Cluster, index: int) -> bool:
    try:
        await cluster.pod(index)
    except RuntimeError:
        return False
    return True


async def test_a_graceful_deletion_keeps_the_pod_ready_until_its_deadline(cluster):
    await cluster.start(2)
    started = time.time()
    await cluster.delete_pod(1, grace=2)
    pod = await cluster.pod(1)
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 2
    deadline = pod["metadata"]["deletionTimestamp"]
    assert deadline.endswith("Z")
    assert pod["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    await asyncio.sleep(0.8)
    assert await exists(cluster, 1)
    async with asyncio.timeout(3):
        while await exists(cluster, 1):
            await asyncio.sleep(0.05)
    assert 1 <= time.time() - started <= 2.5  # the deadline is written to the second


async def test_a_rolling_update_goes_from_the_highest_ordinal_down_one_ready_pod_at_a_time(cluster):
    await cluster.start(4)
    order: list[int] = []
    ready_before_next: list[bool] = []

    async def pre_stop(index: int) -> None:
        if order:  # the pod replaced just before this one is Ready on the new revision
            previous = await cluster.pod(order[-1])
            ready_before_next.append(
                previous["metadata"]["labels"][REVISION_LABEL] == "rev-2"
                and previous["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
            )
        order.append(index)
        rolling = (await cluster.stateful_set())["status"]
        assert (rolling["currentRevision"], rolling["updateRevision"]) == ("rev-1", "rev-2")

    await cluster.roll("rev-2", grace=1, pre_stop=pre_stop, start_after=0.1)
    assert order == [3, 2, 1, 0]
    assert ready_before_next == [True, True, True]
    for index in range(4):
        assert (await cluster.pod(index))["metadata"]["labels"][REVISION_LABEL] == "rev-2"
    assert (await cluster.stateful_set())["status"]["currentRevision"] == "rev-2"


async def test_a_partition_leaves_the_pods_below_it_on_the_old_revision(cluster):
    await cluster.start(4)
    await cluster.roll("rev-2", grace=1, partition=2, exit_after=0, start_after=0)
    labels = [(await cluster.pod(i))["metadata"]["labels"][REVISION_LABEL] for i in range(4)]
    assert labels == ["rev-1", "rev-1", "rev-2", "rev-2"]
    status = (await cluster.stateful_set())["status"]
    assert (status["currentRevision"], status["updateRevision"]) == ("rev-1", "rev-2")
