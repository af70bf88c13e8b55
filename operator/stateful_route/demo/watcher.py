"""Following the route while the demo runs: the displayed table, the balance, the operator's
evictions."""

from __future__ import annotations

import asyncio
import contextlib

from stateful_route import RouteTable
from stateful_route.demo.story import DisplayState, Story
from stateful_route.demo.summary import Summary, imbalance
from stateful_route.testing.sim import NS, ROUTE, Cluster

__all__ = ["watch"]


async def watch(
    table: RouteTable,
    cluster: Cluster,
    live: DisplayState,
    summary: Summary,
    stop: asyncio.Event,
    story: Story,
) -> None:
    """Refresh the displayed table, and tell each eviction the operator posted."""
    seen: set[str] = set()
    while not stop.is_set():
        with contextlib.suppress(Exception):
            live.snapshot = await table.snapshot(NS, ROUTE)
            live.phases = await table.phases(NS, ROUTE)
            summary.worst_imbalance = max(summary.worst_imbalance, imbalance(live.snapshot))
            for event in await cluster.events():
                name = event["metadata"]["name"]
                if name not in seen and event.get("reason") == "Evicted":
                    seen.add(name)
                    story.say(f"operator: {event.get('message')}")
        await asyncio.sleep(0.25)
