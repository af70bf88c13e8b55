"""Migrating a route's Redis data to this release's layout: online, resumable, idempotent.

A route written before layouts were recorded may hold layout 1's data (each pod's users in one
sorted set ``p:<pod>``, the phases a JSON string) beside today's shards, and shard entries a
layout-1 script left behind when it moved or removed a link. ``Migrator.migrate`` moves the
layout-1 sets into the shards, checks every shard entry against its link (removing those that
name another pod), converts the phases and records this layout, in script calls of at most
``batch`` users each: gateways and pods of either layout keep working meanwhile, each call
checks every user against its link, and a crash at any point leaves a route that the next run
finishes (nothing is marked while a layout-1 set is left: the sets are found by a SCAN, and the
last call checks every set the route may hold). A route already marked is checked again in
full by ``stateful-route migrate`` (``full``): a layout-1 pod driver that ran after the marking
left shard entries no layout-1 set shows. docs/redis.md ("Layout versions") says what each
layout holds and what each script does with an older one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stateful_route.core.constants import LAYOUT
from stateful_route.store import keys, scripts
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded
from stateful_route.store.replies import text

__all__ = ["BATCH", "Migration", "Migrator"]

# Users per script call: the same bound as every batch of the store (a call stays short).
BATCH = 1000
# FINISH calls of one migration that may each find a layout-1 set written meanwhile and move it.
FINISH_ROUNDS = 3

T = TypeVar("T")
Guard = Callable[[Awaitable[T], float], Awaitable[T]]


@dataclass(slots=True)
class Migration:
    """What one migration of a route did."""

    namespace: str
    service: str
    before: int | None  # the layout the route recorded; None: none (written before they were)
    after: int | None = None  # LAYOUT when done; None while a layout-1 writer still runs, or no table
    moved: dict[int, int] = field(default_factory=dict)  # layout-1 links indexed in shards, per pod
    dropped: int = 0  # layout-1 entries whose link had gone or named another pod
    stale: int = 0  # shard entries whose link named another pod (or none), removed
    checked: int = 0  # shard entries checked against their links
    phases_converted: bool = False

    @property
    def done(self) -> bool:
        return self.after == LAYOUT

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``stateful-route migrate --json``, the operator's event)."""
        return {
            "namespace": self.namespace,
            "service": self.service,
            "layout_before": self.before,
            "layout_after": self.after,
            "moved": sum(self.moved.values()),
            "moved_by_pod": {str(pod): n for pod, n in sorted(self.moved.items())},
            "dropped": self.dropped,
            "stale": self.stale,
            "checked": self.checked,
            "phases_converted": self.phases_converted,
            "done": self.done,
        }

    @property
    def message(self) -> str:
        """One line for logs and the route's Kubernetes event."""
        before = "unrecorded" if self.before is None else str(self.before)
        state = f"now layout {self.after}" if self.done else "not finished (a layout-1 writer still runs)"
        return (
            f"migrated layout {before}: {sum(self.moved.values())} links moved into shards, "
            f"{self.stale + self.dropped} stale entries removed, {self.checked} checked; {state}"
        )


class Migrator:
    """Runs the migration scripts of one Redis; every call bounded by ``timeout``."""

    def __init__(
        self, redis: AnyRedis, keyring: keys.Keyring, timeout: float, guard: Guard[Any] = guarded
    ) -> None:
        self._redis = redis
        self.keyring = keyring
        self.timeout = timeout
        self._guard = guard
        self._links = redis.register_script(scripts.MIGRATE_LINKS)
        self._verify = redis.register_script(scripts.MIGRATE_VERIFY)
        self._finish = redis.register_script(scripts.MIGRATE_FINISH)

    async def routes(self, namespace: str | None = None) -> list[tuple[str, str]]:
        """Every (namespace, service) with a route in this prefix (each namespace's service set),
        or only ``namespace``'s; sorted."""
        if namespace is not None:
            sets = [self.keyring.services(namespace)]
        else:
            match = keys.services_key(self.keyring.prefix, "*")
            sets = [text(k) async for k in self._redis.scan_iter(match=match, count=BATCH)]
        found: list[tuple[str, str]] = []
        for key in sets:
            ns = key.removeprefix(f"{self.keyring.prefix}:ns:").removesuffix(":services")
            members = await self._guard(self._redis.smembers(key), self.timeout)
            found += [(ns, text(m)) for m in members]
        return sorted(found)

    async def layout(self, route_keys: keys.RouteKeys) -> int | None:
        """The layout the route recorded, or None."""
        found = await self._guard(self._redis.hget(route_keys.config, "layout"), self.timeout)
        return None if found is None else int(text(found))

    async def known_pods(self, route_keys: keys.RouteKeys) -> set[int]:
        """Every index the route knows: in its table, its shards' counts or its pod instances."""
        pipe = self._redis.pipeline(transaction=False)
        for key in (route_keys.pods, route_keys.link_counts, route_keys.instances):
            pipe.hkeys(key)
        known = await self._guard(pipe.execute(), self.timeout)
        return {int(text(i)) for found in known for i in found if text(i).isdigit()}

    async def legacy_pods(self, route_keys: keys.RouteKeys, *, scan: bool = False) -> list[int]:
        """The pods that have a layout-1 set. ``scan``: all of them, found by a SCAN of the
        keyspace (a layout-1 pod driver may write a set for any index, e.g. of a pod not in the
        table yet); else those of every index up to the highest the route knows, one pipelined
        EXISTS each (the cheap check of a route already marked)."""
        if scan:
            return sorted(await self._scan_legacy(route_keys))
        known = await self.known_pods(route_keys)
        if not known:
            return []
        candidates = range(max(known) + 1)
        pipe = self._redis.pipeline(transaction=False)
        for pod in candidates:
            pipe.exists(route_keys.legacy_pod(pod))
        present = await self._guard(pipe.execute(), self.timeout * (1 + len(candidates) // BATCH))
        return [pod for pod, there in zip(candidates, present, strict=True) if there]

    async def _scan_legacy(self, route_keys: keys.RouteKeys) -> set[int]:
        found: set[int] = set()
        match = _glob_escape(route_keys.legacy_pods) + "*"
        names = self._redis.scan_iter(match=match, count=BATCH).__aiter__()
        while (name := await self._guard(anext(names, None), self.timeout)) is not None:
            index = text(name).removeprefix(route_keys.legacy_pods)
            if index.isdigit():  # not p:exp
                found.add(int(index))
        return found

    async def absorb(self, route_keys: keys.RouteKeys, pod: int, into: Migration | None = None) -> int:
        """Move pod ``pod``'s layout-1 set (if any) into its shards, ``BATCH`` users per call;
        how many links were moved. Eviction and hand-offs call this first, so they find users a
        layout-1 release linked, migrated or not."""
        moved = 0
        if not await self._guard(self._redis.exists(route_keys.legacy_pod(pod)), self.timeout):
            return moved  # the usual case, one read: nothing of layout 1 left
        while True:
            added, dropped, stale, left = await self._guard(
                self._links(
                    keys=[route_keys.legacy_pod(pod), *_route(route_keys)],
                    args=[route_keys.pod_links, route_keys.links, pod, BATCH],
                ),
                self.timeout,
            )
            moved += int(added)
            if into is not None:
                into.moved[pod] = into.moved.get(pod, 0) + int(added)
                into.dropped += int(dropped)
                into.stale += int(stale)
            if int(left) == 0:
                return moved

    async def verify(self, route_keys: keys.RouteKeys, pod: int, into: Migration) -> None:
        """Check every shard entry of ``pod`` against its link, about ``BATCH`` per call."""
        shard = 0
        while True:
            shard, checked, removed = await self._guard(
                self._verify(
                    keys=[route_keys.pod(pod), *_route(route_keys)],
                    args=[route_keys.pod_links, route_keys.links, pod, shard, BATCH],
                ),
                self.timeout,
            )
            into.checked += int(checked)
            into.stale += int(removed)
            if int(shard) == 0:
                return

    async def migrate(
        self,
        namespace: str,
        service: str,
        *,
        full: bool = False,
        progress: Callable[[Migration, int], None] | None = None,
        started: Callable[[Migration], None] | None = None,
    ) -> Migration:
        """Bring the route to this layout (see the module). Without ``full``, a route marked with
        this layout and holding no layout-1 set of an index it knows costs two round trips and
        changes nothing (an operator that starts). ``full`` (``stateful-route migrate``, once the
        last layout-1 client is gone): the whole migration even on a marked route, since a
        layout-1 pod driver that removed or moved users after the marking left shard entries no
        layout-1 set shows. ``started(so_far)`` is called once there is work to do, before any, and
        ``progress(so_far, pod)`` after each pod. LayoutTooNew when
        a newer release wrote the route."""
        route_keys = self.keyring.route(namespace, service)
        result = Migration(namespace, service, await self.layout(route_keys))
        if result.before == LAYOUT and not full and not await self.legacy_pods(route_keys):
            result.after = LAYOUT
            return result
        if started is not None:
            started(result)
        legacy = await self.legacy_pods(route_keys, scan=True)
        for pod in legacy:
            await self.absorb(route_keys, pod, result)
            if progress is not None:
                progress(result, pod)
        holders = await self._guard(self._redis.hkeys(route_keys.link_counts), self.timeout)
        for pod in sorted(int(text(i)) for i in holders if text(i).isdigit()):
            await self.verify(route_keys, pod, result)
            if progress is not None:
                progress(result, pod)
        await self._finish_route(route_keys, set(legacy), result)
        return result

    async def _finish_route(self, route_keys: keys.RouteKeys, found: set[int], into: Migration) -> None:
        """Record this layout unless a layout-1 set is left: FINISH checks the sets found and
        those of every index the route knows now, so a set a layout-1 writer created meanwhile
        is moved first (up to FINISH_ROUNDS times; then the route stays unmarked: not done)."""
        for _ in range(FINISH_ROUNDS):
            known = await self.known_pods(route_keys)
            candidates = found | set(range(max(known, default=-1) + 1))
            done, reply = await self._guard(
                self._finish(
                    keys=[*_route(route_keys), route_keys.phases, route_keys.legacy_expiries],
                    args=[route_keys.pod_links, *(route_keys.legacy_pod(pod) for pod in sorted(candidates))],
                ),
                self.timeout,
            )
            if int(done) == 1:
                into.after = await self.layout(route_keys)
                into.phases_converted = bool(reply)
                return
            for name in reply:
                pod = int(text(name).removeprefix(route_keys.legacy_pods))
                found.add(pod)
                await self.absorb(route_keys, pod, into)


def _route(route_keys: keys.RouteKeys) -> list[str]:
    return [route_keys.pods, route_keys.reports, route_keys.config, route_keys.available]


def _glob_escape(literal: str) -> str:
    """``literal`` as a SCAN MATCH pattern matching only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", literal)
