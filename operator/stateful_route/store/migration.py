"""Migrating a route's Redis data to this release's layout: online, resumable, idempotent.

A route written before layouts were recorded may hold layout 1's data (each pod's users in one
sorted set ``p:<pod>``, the phases a JSON string) beside today's shards, and shard entries a
layout-1 script left behind when it moved or removed a link. ``Migrator.migrate`` moves the
layout-1 sets into the shards, checks every shard entry against its link (removing those that
name another pod), converts the phases and records this layout, in script calls of at most
``batch`` users each: gateways and pods of either layout keep working meanwhile, each call
checks every user against its link, and a crash at any point leaves a route that the next run
finishes (nothing is marked before everything is moved). docs/redis.md ("Layout versions") says what
each layout holds and what each script does with an older one.
"""

from __future__ import annotations

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

    async def legacy_pods(self, route_keys: keys.RouteKeys) -> list[int]:
        """The pods that have a layout-1 set: of every index up to the highest the route knows
        (in its table, its shards' counts or its pod instances), one pipelined EXISTS each
        (no SCAN of the whole keyspace per route)."""
        pipe = self._redis.pipeline(transaction=False)
        for key in (route_keys.pods, route_keys.link_counts, route_keys.instances):
            pipe.hkeys(key)
        known = await self._guard(pipe.execute(), self.timeout)
        indices = [int(text(i)) for found in known for i in found if text(i).isdigit()]
        if not indices:
            return []
        candidates = range(max(indices) + 1)
        pipe = self._redis.pipeline(transaction=False)
        for pod in candidates:
            pipe.exists(route_keys.legacy_pod(pod))
        present = await self._guard(pipe.execute(), self.timeout * (1 + len(candidates) // BATCH))
        return [pod for pod, there in zip(candidates, present, strict=True) if there]

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
        progress: Callable[[Migration, int], None] | None = None,
        started: Callable[[Migration], None] | None = None,
    ) -> Migration:
        """Bring the route to this layout (see the module). A route marked with this layout and
        holding no layout-1 set costs two round trips and changes nothing. ``started(so_far)`` is
        called once there is work to do, before any, and ``progress(so_far, pod)`` after each
        pod. LayoutTooNew when a newer release wrote the route."""
        route_keys = self.keyring.route(namespace, service)
        result = Migration(namespace, service, await self.layout(route_keys))
        legacy = await self.legacy_pods(route_keys)
        if result.before == LAYOUT and not legacy:
            result.after = LAYOUT
            return result
        if started is not None:
            started(result)
        for pod in legacy:
            await self.absorb(route_keys, pod, result)
            if progress is not None:
                progress(result, pod)
        holders = await self._guard(self._redis.hkeys(route_keys.link_counts), self.timeout)
        for pod in sorted(int(text(i)) for i in holders if text(i).isdigit()):
            await self.verify(route_keys, pod, result)
            if progress is not None:
                progress(result, pod)
        done, converted = await self._guard(
            self._finish(
                keys=[*_route(route_keys), route_keys.phases, route_keys.legacy_expiries],
                args=[route_keys.pod_links, *(route_keys.legacy_pod(pod) for pod in legacy)],
            ),
            self.timeout,
        )
        if int(done) == 1:
            result.after = await self.layout(route_keys)
            result.phases_converted = bool(converted)
        return result


def _route(route_keys: keys.RouteKeys) -> list[str]:
    return [route_keys.pods, route_keys.reports, route_keys.config, route_keys.available]
