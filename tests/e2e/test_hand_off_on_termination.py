"""A deleted pod hands its users off in its preStop hook (the Python API, or the command for pods
not written in Python) while the real operator holds it under spec.onTermination Handoff: each
of its users moves exactly once, before the pod dies, and nobody else moves."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from stateful_route import ServerDriver
from stateful_route.testing.sim import NS, ROUTE, Cluster
from tests.e2e.test_route_lifecycle import running_route
from tests.routes import poll_until

USERS = 240
LEAVING = 2
SCRIPT = Path(sys.executable).parent / "stateful-route"


async def deploy_one_pod(cluster: Cluster, redis, redis_url: str, prefix: str, pre_stop) -> None:
    """Place users on 3 pods, delete the leaving pod gracefully with ``pre_stop`` as its hook,
    and check who moved, where, and what gateways answer."""
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, gateway):
        before = {f"u{i}": await gateway.compute_linked_pod(NS, f"u{i}", ROUTE) for i in range(USERS)}
        leaving = {uid for uid, pod in before.items() if pod == LEAVING}
        assert len(leaving) == USERS // 3

        await cluster.remove_gracefully(LEAVING, 30, pre_stop=pre_stop)  # returns once it is gone

        async def gone() -> bool:
            return LEAVING not in (await table.snapshot(NS, ROUTE)).pods

        await poll_until(gone, within=10, every=0.05)
        after = {uid: await gateway.compute_linked_pod(NS, uid, ROUTE) for uid in before}
        moved = {uid for uid in before if after[uid] != before[uid]}
        assert moved == leaving  # exactly the leaving pod's users, nobody else
        assert {after[uid] for uid in leaving} == {0, 1}
        evictions = [e["message"] for e in await cluster.events() if e.get("reason") == "Evicted"]
        assert all(m.startswith("evicted 0 links") for m in evictions), evictions  # nothing left to evict
        assert (await table.snapshot(NS, ROUTE)).links == {0: USERS // 2, 1: USERS // 2}


async def test_a_pod_hands_its_users_off_in_its_pre_stop_hook(cluster, redis, redis_url, prefix):
    saved: list[str] = []

    async def pre_stop(index: int) -> None:
        server = ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=index, prefix=prefix)

        async def save(uid: str) -> None:
            assert (await redis.get(f"{prefix}:{{{NS}/{ROUTE}}}:l:{uid}")).rstrip(b"p") == b"%d" % index
            saved.append(uid)

        result = await server.hand_off_all(before=save, concurrency=8)
        assert (result.moved, result.left) == (USERS // 3, 0)

    await deploy_one_pod(cluster, redis, redis_url, prefix, pre_stop)
    assert len(saved) == len(set(saved)) == USERS // 3  # once per user, before its move


async def test_the_handoff_command_is_a_pre_stop_hook(cluster, redis, redis_url, prefix):
    async def pre_stop(index: int) -> None:
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT), "handoff", NS, ROUTE, str(index), "--redis-url", redis_url, "--prefix", prefix,
            "--timeout", "20", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == f"handed off {USERS // 3} users from pod {index}; reported Shutdown"

    await deploy_one_pod(cluster, redis, redis_url, prefix, pre_stop)
