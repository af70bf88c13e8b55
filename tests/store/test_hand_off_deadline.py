"""hand_off_all's ``within`` bounds the whole call (slow or hanging ``before`` callbacks are cut
off at it), and a Redis fault mid-pass surfaces as StoreUnavailable, never an ExceptionGroup."""

from __future__ import annotations

import asyncio
import os
import random
import signal

import pytest

from stateful_route import RouteTable, RoutingState, ServerDriver, StoreUnavailable
from stateful_route.store.keys import Keyring
from stateful_route.testing.shards import write_links
from tests.routes import NS, SVC, make_route


def server(redis, prefix, pod: int, timeout: float = 1.0) -> ServerDriver:
    return ServerDriver(redis, namespace=NS, service=SVC, pod_index=pod, prefix=prefix, timeout=timeout)


async def link_users(redis, prefix: str, pod: int, count: int) -> list[str]:
    """``count`` persistent links to ``pod``, written in one pipeline, then the table re-scored."""
    users = [f"u{i}" for i in range(count)]
    base = f"{prefix}:{{{NS}/{SVC}}}:"
    pipe = redis.pipeline(transaction=False)
    for uid in users:
        pipe.set(base + f"l:{uid}", f"{pod}p")
    await pipe.execute()
    await write_links(redis, Keyring(prefix).route(NS, SVC), pod, dict.fromkeys(users, float("inf")))
    return users


# Two runs, each drawing its seed when it runs: parametrizing by the seeds themselves would name
# the tests differently in each pytest-xdist worker, which then refuses to run.
@pytest.mark.parametrize("run", [1, 2])
async def test_within_bounds_the_call_when_callbacks_are_slow(redis, prefix, run):
    seed = int(os.environ.get("SR_SEED", random.randrange(1 << 30)))
    print(f"run {run}: seed {seed} (SR_SEED={seed} reproduces it)")
    rng = random.Random(seed)
    await make_route(redis, prefix, pods=3)
    users = await link_users(redis, prefix, 0, rng.randrange(200, 400))
    within = rng.uniform(0.5, 1.0)

    async def save(uid: str) -> None:  # a realistic state save: far too slow for everyone in time
        await asyncio.sleep(rng.uniform(0.05, 0.15))

    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await server(redis, prefix, 0).hand_off_all(before=save, within=within, concurrency=4)
    took = loop.time() - started
    assert took < within + 0.5, (took, within)  # + the Shutdown report
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.pods[0].routing is RoutingState.SHUTDOWN
    assert 0 < result.moved < len(users)
    assert result.left == snapshot.links[0] == len(users) - result.moved  # in-flight users stayed


async def test_within_cancels_a_hanging_callback_and_counts_its_user_as_left(redis, prefix):
    await make_route(redis, prefix, pods=3)
    users = await link_users(redis, prefix, 0, 5)
    started_saving: list[str] = []

    async def hang(uid: str) -> None:
        started_saving.append(uid)
        await asyncio.Event().wait()

    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await server(redis, prefix, 0).hand_off_all(before=hang, within=0.5, concurrency=2)
    assert loop.time() - started < 1.0
    assert len(started_saving) == 2  # each worker stopped at its first, hanging, user
    assert (result.moved, result.left) == (0, len(users))
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.pods[0].routing is RoutingState.SHUTDOWN


async def test_within_zero_still_counts_who_is_left_and_reports_shutdown(redis, prefix):
    await make_route(redis, prefix, pods=3)
    users = await link_users(redis, prefix, 0, 50)
    result = await server(redis, prefix, 0).hand_off_all(within=0)
    assert result.left == len(users) - result.moved
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.pods[0].routing is RoutingState.SHUTDOWN
    assert snapshot.links[0] == result.left


async def test_a_fault_mid_pass_raises_store_unavailable_not_a_group(make_redis, private_redis, prefix):
    redis_server = private_redis()
    redis = make_redis(redis_server.url)
    await make_route(redis, prefix, pods=3)
    await link_users(redis, prefix, 0, 400)
    assert redis_server.process is not None
    pid = redis_server.process.pid
    saved = 0

    async def save(uid: str) -> None:  # Redis stops answering while workers are mid-pass
        nonlocal saved
        saved += 1
        if saved == 40:
            os.kill(pid, signal.SIGSTOP)

    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(StoreUnavailable):
            await server(make_redis(redis_server.url), prefix, 0, timeout=0.3).hand_off_all(
                before=save, within=10
            )
        assert loop.time() - started < 2.0  # the fault's timeout plus the Shutdown attempt's
    finally:
        os.kill(pid, signal.SIGCONT)
