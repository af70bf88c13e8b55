"""The release of layout 1 (commit 4fd8d86), as its clients called Redis: its own frozen scripts
(tests/data/layout_1) with its KEYS and ARGV, so a test writes a route the old way, or runs an old
gateway, pod driver or operator beside today's on the same route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from stateful_route.store import changes
from tests.routes import NS, SVC

SCRIPTS = Path(__file__).parent.parent / "data" / "layout_1"


class OldRelease:
    """One route, driven by the code of layout 1 (each method: what that release's call sent)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, ns: str = NS, service: str = SVC) -> None:
        self.redis, self.ns, self.service = redis, ns, service
        self.base = f"{prefix}:{{{ns}/{service}}}:"
        self.pod_links = self.base + "p:"  # layout 1: one sorted set per pod
        self.channel = f"{prefix}:changes:{ns}"
        self.services = f"{prefix}:ns:{ns}:services"
        self._scripts = {p.stem: redis.register_script(p.read_text()) for p in SCRIPTS.glob("*.lua")}

    def _route(self) -> list[str]:
        return [self.base + "pods", self.base + "srv", self.base + "cfg", self.base + "avail"]

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def put_pods(self, pods: dict[int, str], *, owner: str = "") -> int:
        """The operator's table write: {index: "ready,terminating,routing,load"}."""
        await self.redis.sadd(self.services, self.service)
        fields = [f for idx, state in sorted(pods.items()) for f in (str(idx), state, "")]
        keys = [self.base + k for k in ("pods", "srv", "cfg", "ver", "avail", "ids")]
        prefix = changes.table_changed(self.service)
        return int(
            await self._run(
                "write_table", keys, ["replace", self.channel, prefix, self.pod_links, owner, *fields]
            )
        )

    async def configure(self, *, cap: int = 0, ttl_ms: int | str = "", owner: str = "") -> None:
        await self._run(
            "configure",
            [self.base + k for k in ("pods", "srv", "cfg", "avail")],
            [self.pod_links, cap, ttl_ms, owner],
        )

    async def place(self, uid: str, ttl_ms: int = 300_000) -> Any:
        """A gateway's compute_linked_pod that missed its cache."""
        return await self._run("place", [self.base + "l:" + uid], [self.base, ttl_ms, ""])

    async def set_linked_pod(self, uid: str, pod: int) -> Any:
        """A pod driver confirming its user (persistent, unconditionally)."""
        args = [self.pod_links, uid, pod, "0", self.channel, changes.unlinked(self.service, uid)]
        return await self._run("set_persistent", [self.base + "l:" + uid, *self._route()], args)

    async def remove(self, uid: str, expected: int | None = None) -> Any:
        args = [
            self.pod_links,
            uid,
            "" if expected is None else expected,
            0,
            self.channel,
            changes.unlinked(self.service, uid),
        ]
        return await self._run("remove", [self.base + "l:" + uid, *self._route()], args)

    async def evict(self, pod: int, batch: int = 1000) -> int:
        """The operator's eviction of every link to ``pod``; how many links it removed."""
        removed = 0
        while True:
            left, gone, _ = await self._run(
                "evict",
                [self.pod_links + str(pod), *self._route()],
                [pod, self.base + "l:", batch, self.pod_links],
            )
            removed += len(gone)
            if int(left) == 0:
                return removed

    async def counts(self) -> dict[int, int]:
        """Links per pod, as that release's snapshot counted them."""
        keys = [self.base + k for k in ("pods", "srv", "cfg", "ver", "avail")]
        reply = await self._run("snapshot", keys, [self.pod_links])
        return {int(reply[i]): int(reply[i + 5]) for i in range(3, len(reply), 7)}

    async def put_phases(self, phases: dict[int, str]) -> None:
        """Layout 1's phases: one JSON string ({"<index>": "<deadline>,<0|1>"})."""
        await self.redis.set(self.base + "phase", json.dumps({str(i): p for i, p in sorted(phases.items())}))

    async def phases(self) -> dict[int, str]:
        """Layout 1's read of the phases (a GET: WRONGTYPE on today's hash)."""
        raw = await self.redis.get(self.base + "phase")
        return {int(i): v for i, v in json.loads(raw).items()} if raw else {}
