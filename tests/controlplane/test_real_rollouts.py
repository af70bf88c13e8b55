"""The StatefulSet's life as the real StatefulSet controller drives it, with gateways placing users
throughout: RollingUpdate (one pod at a time, `maxUnavailable: 2`, Parallel), a partition, OnDelete,
a Parallel scale-up and scale-down, and a rollback in the middle of a rollout.

Judged each time: the route table follows the controller's revisions (pods to be replaced are
written outdated and take no new users while a pod that stays does); no answer names a pod
unroutable for more than 1 s; a user's answer changes only after its pod became unroutable, and
at most once per rollout; `PodPending` lasts no longer than `rolloutWaitSeconds`; the status and
the Evicted events show in `kubectl describe`. Pods terminate under Handoff without a hook: each
stays routable for its 2 s grace, then the kubelet stand-in reports it stopped and deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from stateful_route import RouteTable
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.sim import operator_thread
from tests.controlplane.rollout_judge import (
    STALENESS_BOUND,
    Follower,
    Gateways,
    Report,
    Workload,
    live,
    revision,
    updated,
)
from tests.controlplane.test_real_statefulset import ROUTE, until_status, until_table

# terminationGracePeriodSeconds. Not 1: deletionTimestamp has whole seconds, so a 1 s grace can
# end within a few hundred ms of the delete, before the operator has heard of the new revision
# from the StatefulSet's status (its users are then placed as if no rollout were under way).
GRACE = 2
ROLLOUT_WAIT = 5  # rolloutWaitSeconds: well above a replacement's start-up here (under 1 s)
# A PodPending wait ends at the user's next answer; askers reach each user within ~0.1 s.
ASK_SLACK = 1.0


@dataclass
class Run:
    """One judged run: the StatefulSet, its route's table, the gateways and the follower."""

    workload: Workload
    table: RouteTable
    gateways: Gateways
    follower: Follower
    report: Report | None = None


@pytest.fixture
def judged(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    make_redis: Callable[..., aioredis.Redis],
    redis_url: str,
    prefix: str,
) -> Callable[..., contextlib.AbstractAsyncContextManager[Run]]:
    """``judged(replicas, strategy=..., policy=...)``: the StatefulSet created, a route over it,
    the operator and the gateways running; on exit every promise is checked."""

    @contextlib.asynccontextmanager
    async def run(replicas: int, **options: Any) -> AsyncIterator[Run]:
        workload = Workload(control_plane, namespace)
        table = RouteTable(redis, prefix=prefix)
        await workload.create(replicas, grace=GRACE, **options)
        await workload.create_route(rebind="Eager", rolloutWaitSeconds=ROLLOUT_WAIT)
        async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
            await until_table(table, namespace, list(range(replicas)))
            gateways = Gateways(make_redis, prefix, namespace)
            follower = Follower(workload, table)
            await gateways.start()
            stop = asyncio.Event()
            following = asyncio.create_task(follower.run(stop))
            judged_run = Run(workload, table, gateways, follower)
            try:
                yield judged_run
            finally:
                stop.set()
                await following
                judged_run.report = await gateways.stop()
        check(judged_run)
        described = control_plane.kubectl("describe", "sroute", ROUTE, "-n", namespace).stdout
        assert re.search(rf"Summary:\s+{await summary(workload)}\n", described), described
        assert "Evicted" in described, described
        assert not kubelet.errors_in(namespace)
        workload.client.close()

    return run


async def summary(workload: Workload) -> str:
    return str((await workload.status()).get("summary"))


def check(run: Run) -> None:
    """Every promise of the module's docstring, over the whole run."""
    report = run.report
    assert report is not None
    verdict, findings = report.verdict, report.findings
    print(
        f"\n{findings.count} answers, {findings.errors['PodPending']} PodPending "
        f"(longest wait {max((w for _, w in findings.waits), default=0):.2f} s), worst staleness "
        f"{verdict.worst * 1000:.0f} ms, moves per phase {[sum(p.values()) for p in report.phases]}, "
        f"{run.follower.samples} samples, at most {run.follower.most_terminating} terminating"
    )
    assert findings.unexpected == []
    assert verdict.stale == [], verdict.stale[:5]
    assert verdict.worst <= STALENESS_BOUND + 0.5  # a call may end well after it began
    assert verdict.moves == [], verdict.moves[:5]
    assert verdict.refused == [], verdict.refused[:5]
    assert findings.count > 1000
    # PodPending ends with an answer within the wait (every user is asked again meanwhile).
    assert findings.pending == {}
    assert [w for w in findings.waits if w[1] > ROLLOUT_WAIT + ASK_SLACK] == []
    for phase, moved in enumerate(report.phases):
        twice = [uid for uid, n in moved.items() if n > 1]
        assert twice == [], f"phase {phase}: {len(twice)} users moved twice: {report.history(twice[0])}"
    assert run.follower.violations == [], run.follower.violations
    assert run.follower.samples > 10


async def revisions(workload: Workload) -> dict[int, str | None]:
    return {i: revision(pod) for i, pod in (await workload.listed()).items()}


@pytest.mark.parametrize(
    ("policy", "max_unavailable"),
    [("OrderedReady", 1), ("OrderedReady", 2), ("Parallel", 2)],
    ids=["one-at-a-time", "maxUnavailable-2", "parallel-maxUnavailable-2"],
)
async def test_a_rolling_update_moves_each_user_once(judged: Any, policy: str, max_unavailable: int):
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}}
    async with judged(4, strategy=strategy, policy=policy) as run:
        before = await revisions(run.workload)
        run.gateways.mark()
        await run.workload.deploy("game:2")
        await run.workload.until_settled(4)
        after = await revisions(run.workload)
        assert len(set(before.values())) == len(set(after.values())) == 1
        assert set(before.values()) != set(after.values())
    # MaxUnavailableStatefulSet is on by default in v1.37 (beta): pods go two at a time.
    assert run.follower.most_terminating == max_unavailable


async def test_a_partition_stops_the_rollout_below_it_until_lowered(judged: Any):
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    async with judged(4, strategy=strategy) as run:
        old = set((await revisions(run.workload)).values())
        run.gateways.mark()
        await run.workload.deploy("game:2")

        def staged(sts: dict[str, Any], pods: dict[int, dict[str, Any]]) -> bool:
            old_ones = [i for i, pod in pods.items() if revision(pod) in old and live(pod)]
            return sorted(updated(sts, pods)) == [2, 3] and old_ones == [0, 1]

        await run.workload.until(staged)
        # Below the partition the pods stay: none is outdated, all four take new users.
        await asyncio.sleep(1.5)
        snapshot = await run.table.snapshot(run.workload.namespace, ROUTE)
        assert sorted(snapshot.available) == [0, 1, 2, 3]
        run.gateways.mark()
        await run.workload.set_partition(0)
        await run.workload.until_settled(4)


async def test_on_delete_outdates_every_old_pod_until_each_is_deleted(judged: Any):
    async with judged(4, strategy={"type": "OnDelete"}) as run:
        run.gateways.mark()
        await run.workload.deploy("game:2")
        await asyncio.sleep(2)  # nothing is replaced: every pod outdated, and all take new users
        assert not (await run.workload.read())["status"].get("updatedReplicas")
        snapshot = await run.table.snapshot(run.workload.namespace, ROUTE)
        assert sorted(snapshot.available) == [0, 1, 2, 3]
        await until_status(run.workload, outdatedPods=[0, 1, 2, 3])
        described = run.workload.control_plane.kubectl(
            "describe", "sroute", ROUTE, "-n", run.workload.namespace
        ).stdout
        assert len(re.findall(r"\n\s+State:\s+Outdated\n", described)) == 4, described
        for count, index in enumerate([3, 1, 2, 0], start=1):
            await run.workload.delete_pod(index)
            await run.workload.until_updated(count)
        await run.workload.until_settled(4)


async def test_parallel_pods_scale_down_and_up_at_once(judged: Any):
    async with judged(4, policy="Parallel") as run:
        run.gateways.mark()
        await run.workload.resize(2)
        await until_table(run.table, run.workload.namespace, [0, 1], within=30)
        await asyncio.sleep(1)  # the moved users' next answers
        run.gateways.mark()
        await run.workload.resize(4)
        await until_table(run.table, run.workload.namespace, [0, 1, 2, 3])
        await asyncio.sleep(1)
    assert run.follower.most_terminating == 2  # Parallel: 3 and 2 deleted together
    assert run.report is not None
    scaled_down, scaled_up = run.report.phases[1:]
    assert sum(scaled_down.values()) > 50  # the users of pods 2 and 3, once each
    assert sum(scaled_up.values()) == 0  # new pods take new users; nobody moves to them


async def test_a_rollback_in_the_middle_of_a_rollout_outdates_the_pods_already_updated(judged: Any):
    """`kubectl rollout undo` halfway: the controller makes the old revision the update revision
    again — equal to the current one, so the status alone shows no rollout — and replaces the
    pods it had updated, highest first. Before the fix the operator wrote none of them outdated,
    so new and evicted users went to pods about to be replaced."""
    async with judged(4) as run:
        old = set((await revisions(run.workload)).values())
        run.gateways.mark()
        await run.workload.deploy("game:2")
        await run.workload.until_updated(2)
        assert (await run.workload.read())["status"]["updateRevision"] not in old
        await run.workload.deploy("game:1")  # what `kubectl rollout undo` writes back
        run.gateways.mark()  # the controller has it: moves caused from now on are the rollback's
        assert (await run.workload.read())["status"]["updateRevision"] in old
        await run.workload.until_settled(4)
        assert set((await revisions(run.workload)).values()) == old
