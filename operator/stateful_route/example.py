"""A short, self-contained tour: a route of ready pods, users placed, a pod drained and lost."""

from __future__ import annotations

import asyncio
import secrets

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from stateful_route import ClientDriver, PodState, RouteTable, RoutingState

__all__ = ["run_example"]

NS, SERVICE = "demo", "game"


async def run_example(url: str, *, users: int, pods: int) -> None:
    """Link ``users`` users to ``pods`` pods, drain pod 0, lose the last pod, show each step."""
    console = Console()
    prefix = f"demo-{secrets.token_hex(3)}"  # never touches keys of anything else
    redis = Redis.from_url(url)
    table = RouteTable(redis, prefix=prefix)
    try:
        await table.put_pods(NS, SERVICE, [PodState(i) for i in range(pods)])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            names = [f"user-{i}" for i in range(users)]
            placed = {uid: await client.compute_linked_pod(NS, uid, SERVICE) for uid in names}
            _show(console, "placed on ready pods", placed)

            await table.update_pod(NS, SERVICE, PodState(0, routing=RoutingState.DENY_NEW_CALL))
            newcomer = await client.compute_linked_pod(NS, "newcomer", SERVICE)
            console.print(f"pod 0 drained: [bold]newcomer[/] placed on pod {newcomer}; its users stay")

            last = pods - 1
            await table.update_pod(NS, SERVICE, PodState(last, terminating=True))
            await asyncio.sleep(0.2)  # the change channel reaches the client's view (bound: 1 s)
            moved = {uid: await client.compute_linked_pod(NS, uid, SERVICE) for uid in names}
            _show(console, f"pod {last} terminating: its users rebound", moved)
    finally:
        async for key in redis.scan_iter(match=f"{prefix}:*"):
            await redis.unlink(key)
        await redis.aclose()


def _show(console: Console, title: str, placed: dict[str, int]) -> None:
    table = Table(title=title)
    table.add_column("pod", justify="right")
    table.add_column("users")
    for pod in sorted(set(placed.values())):
        table.add_row(str(pod), ", ".join(uid for uid, p in placed.items() if p == pod))
    console.print(table)
