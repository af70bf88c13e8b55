"""``stateful-route demo``: the real operator on an emulated cluster, real clients, a short story.

Everything runs in this process against a real Redis: kmock's Kubernetes API emulator, the
operator (kopf) watching it, gateways (``ClientDriver``) placing and looking up users, and the
pods (``ServerDriver``) reporting load and dropping users who leave. A script drains a pod,
deletes one (the StatefulSet brings it back), flaps one NotReady and scales the StatefulSet up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

from stateful_route import ClientDriver, RouteTable, ServerDriver
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.demo.checks import conclude
from stateful_route.demo.options import DemoOptions
from stateful_route.demo.story import GRACE, DisplayState, Story
from stateful_route.demo.summary import Summary
from stateful_route.demo.traffic import Traffic
from stateful_route.demo.watcher import watch
from stateful_route.store import connection
from stateful_route.store.faults import guarded
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.sim import NS, ROUTE, emulated_cluster, operator_thread

__all__ = ["run_demo"]

GATEWAYS = 3
FORGET_WITHIN = 10.0  # seconds the cleanup may take (a few SCAN and UNLINK calls)


@contextlib.asynccontextmanager
async def _redis(url: str, connections: int) -> AsyncIterator[connection.AnyRedis]:
    # The one way of connecting: one server, a cluster or Sentinel; one server's pool queues callers.
    redis = connection.connect(url, queue_at=connections)
    try:
        yield redis
    finally:
        await redis.aclose()


async def run_demo(
    url: str,
    options: DemoOptions,
    on_start: Callable[[DisplayState], contextlib.AbstractContextManager[object]],
) -> Summary:
    """Play the demo against the Redis at ``url``; ``on_start`` wraps the run with a display."""
    rng = random.Random(options.seed)
    prefix = f"demo-{secrets.token_hex(4)}"  # every key the demo writes lives under it
    live = DisplayState(
        present=set(range(options.pods)), duration=options.duration, redis_url=url, prefix=prefix
    )
    metrics = OperatorMetrics()
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(_redis(url, 20))
        stack.push_async_callback(_forget, redis, prefix)
        cluster = await stack.enter_async_context(emulated_cluster())
        live.kubeconfig = str(cluster.kubeconfig)
        table = RouteTable(redis, prefix=prefix)
        await stack.enter_async_context(
            # In its own thread, like a pod of its own: kopf would otherwise take over Ctrl-C and
            # cancel the gateways' tasks when it stops.
            operator_thread(
                cluster, url, prefix, metrics=metrics, reconcile_interval=0.5, status_interval=1.0
            )
        )
        await cluster.start(options.pods, unroutableGraceSeconds=GRACE, rebind="Eager")
        await _until(lambda: _has_pods(table, options.pods), within=10)
        gateways = [
            await stack.enter_async_context(ClientDriver(redis, namespace=NS, prefix=prefix))
            for _ in range(GATEWAYS)
        ]
        servers = {
            i: ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=i, prefix=prefix)
            for i in range(options.pods + 1)
        }
        traffic = Traffic(gateways, servers, options.users)
        summary = traffic.summary
        story = Story(cluster, live, options.pods, rng, traffic.rollout_begins)
        workers = [
            asyncio.create_task(traffic.gateway(g, random.Random(options.seed + i)))
            for i, g in enumerate(gateways)
        ]
        workers.append(asyncio.create_task(traffic.report_loads()))
        workers.append(asyncio.create_task(watch(table, cluster, live, summary, traffic.stop, story)))
        with on_start(live):
            try:
                await story.play(options.duration, summary)
                story.say("settling: every pod back, the operator done")
                await asyncio.sleep(2)
            except asyncio.CancelledError:  # Ctrl-C: stop the story, still summarise and clean up
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                summary.interrupted = True
            finally:
                traffic.stop.set()
                await asyncio.gather(*workers, return_exceptions=True)
        summary.deleted_pod_links = story.held_at_deletion
        await conclude(traffic, table, metrics)
        return summary


async def _forget(redis: connection.AnyRedis, prefix: str) -> None:
    """Remove every key of this run; a Redis that fails or hangs meanwhile is StoreUnavailable
    within FORGET_WITHIN seconds, never a run that does not end."""
    await guarded(delete_prefix(redis, prefix), FORGET_WITHIN)


async def _has_pods(table: RouteTable, pods: int) -> bool:
    return len((await table.snapshot(NS, ROUTE)).routable) == pods


async def _until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110  # polling Redis: there is no event to wait on
            await asyncio.sleep(0.1)
