"""The route table in Redis: which pods a service has and what state each is in."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from cachetools import LRUCache
from redis.asyncio import RedisCluster

from stateful_route.core import validation
from stateful_route.core.errors import NotOwner
from stateful_route.core.state import PodPhase, PodState, RouteSnapshot, RoutingState, ServiceId
from stateful_route.store import changes, keys, scripts
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded
from stateful_route.store.replies import text
from stateful_route.store.services import ServiceSet

__all__ = ["Pruned", "RouteTable", "encode_pod"]

# A round trip carrying many snapshots is slow, not faulty: ``timeout`` more per this many.
_SNAPSHOTS_PER_TIMEOUT = 1000
# Versions read by one MGET (Redis spends well under a millisecond on it), and per ``timeout``.
_VERSIONS_PER_MGET = 1000
_VERSIONS_PER_TIMEOUT = 20_000


class Pruned(NamedTuple):
    """What ``RouteTable.prune`` did: links dropped, Lua calls made, whether nothing is left due."""

    dropped: int
    calls: int
    done: bool


def encode_pod(pod: PodState) -> str:
    """The route table's encoding of a pod: ``ready,terminating,routing,load``."""
    return f"{int(pod.ready)},{int(pod.terminating)},{int(pod.routing)},{pod.load}"


class RouteTable:
    """Reads and writes route tables; every write is one Lua call that also announces it.

    The operator, tests and deployments without Kubernetes write tables only through this class;
    the pods' own reports, combined with the table when it is read, come from ``ServerDriver``.
    """

    def __init__(
        self, redis: AnyRedis, *, prefix: str = "sr", timeout: float = 1.0, routes: int = 4096
    ) -> None:
        """``routes``: how many routes' keys and last snapshots are memoised (LRU); a reader of
        more routes than this (a mirror following many) re-derives them on every read."""
        self._redis = redis
        validation.integer("routes", routes, minimum=1)
        self.keyring = keys.Keyring(prefix, routes)
        self.timeout = validation.seconds("timeout", timeout, minimum=0.001)
        # {route: (its last snapshot reply, that reply decoded)}: a route re-read unchanged (most
        # of a mirror's periodic reads) is not decoded again.
        self._decoded: LRUCache[ServiceId, tuple[list[Any], RouteSnapshot]] = LRUCache(routes)
        self._write = redis.register_script(scripts.WRITE_TABLE)
        self._snapshot = redis.register_script(scripts.SNAPSHOT)
        self._configure = redis.register_script(scripts.CONFIGURE)
        self._put_phases = redis.register_script(scripts.PUT_PHASES)
        self._phases = redis.register_script(scripts.PHASES)
        self._prune = redis.register_script(scripts.PRUNE)
        self._services = ServiceSet(redis, self.keyring, self.timeout)

    async def ping(self) -> bool:
        """Whether Redis answers (for liveness probes)."""
        return bool(await guarded(self._redis.ping(), self.timeout))

    async def put_pods(
        self,
        namespace: str,
        service: str,
        pods: Iterable[PodState],
        *,
        owner: str | None = None,
        instances: Mapping[int, str] | None = None,
        held: Iterable[int] = (),
    ) -> bool:
        """Replace the whole table of a service; returns whether anything changed.

        With ``owner``, the write happens only if the route's policy names that owner (else
        NotOwner): a route deleted or claimed by another is never written back. ``instances``
        names the pod behind each index (``"<pod uid>,<note>"``); a pod written under another uid
        than the index had, or where the table had no pod, drops the report there (a report
        belongs to the pod that made it) and takes the one it made itself before it was written,
        if its driver gave its uid (``ServerDriver(pod_uid=)``). ``held`` are pods written
        DenyNewCall only because a rollout will replace them: placement takes them, if nothing
        else keeps them from new users, when no pod is available (so new users are never left
        with nowhere to go).
        """
        route_keys = self.keyring.route(namespace, service)
        _owner(owner)
        fields = _fields(pods, instances or {}, held)
        return await self._run(route_keys, "replace", fields, owner=owner)

    async def update_pod(self, namespace: str, service: str, pod: PodState, *, held: bool = False) -> bool:
        """Insert or update one pod (``held``: see ``put_pods``); returns whether anything changed."""
        route_keys = self.keyring.route(namespace, service)
        validation.flag("held", held)
        return await self._run(route_keys, "upsert", _fields([pod], {}, [pod.index] if held else []))

    async def remove_pod(self, namespace: str, service: str, index: int) -> bool:
        """Remove one pod (and its own reports); returns whether it was there."""
        route_keys = self.keyring.route(namespace, service)
        validation.pod_index(index)
        return await self._run(route_keys, "remove", [str(index)])

    async def configure(
        self,
        namespace: str,
        service: str,
        *,
        max_links_per_pod: int = 0,
        link_ttl: float | None = None,
        owner: str | None = None,
        rollout_wait: float | None = None,
        keep_links: bool | None = None,
    ) -> None:
        """Set the route's policy: a pod holding ``max_links_per_pod`` links is not available
        (0 = no cap), and temporary links placed anywhere (gateways, rebinds) live ``link_ttl``
        seconds (None: each caller's own TTL). Every pod is re-scored. ``owner`` (a
        StatefulRoute's uid) claims the table: writes naming another owner are refused.
        ``rollout_wait`` (seconds; None keeps the present value, 0 none): how long a user whose
        pod, outdated, becomes unroutable while only outdated pods take users waits for an
        updated one (lookups raise PodPending meanwhile) instead of moving twice.
        ``keep_links`` (None keeps the present value): whether users' links outlive the table,
        recorded so that a table whose route vanished unseen is removed as the route said
        (``keeps_links``). The service joins its namespace's set, so a table written only here
        (its first pods not yet) is found by whoever looks for orphaned tables."""
        route_keys = self.keyring.route(namespace, service)
        validation.load(max_links_per_pod, "max_links_per_pod")
        ttl = "" if link_ttl is None else str(int(validation.seconds("link_ttl", link_ttl, minimum=1) * 1000))
        wait = ""
        if rollout_wait is not None:
            wait = str(round(validation.seconds("rollout_wait", rollout_wait) * 1000))
        _owner(owner)
        keep = "" if keep_links is None else str(int(validation.flag("keep_links", keep_links)))
        await self._services.add(route_keys)
        await guarded(
            self._configure(
                keys=[route_keys.pods, route_keys.reports, route_keys.config, route_keys.available],
                args=[route_keys.pod_links, max_links_per_pod, ttl, owner or "", wait, keep],
            ),
            self.timeout,
        )

    async def keeps_links(self, namespace: str, service: str) -> bool:
        """Whether the table's owner keeps users' links when the table goes (False when it never
        said: the default of a route)."""
        route_keys = self.keyring.route(namespace, service)
        found = await guarded(self._redis.hget(route_keys.config, "keep"), self.timeout)
        return found is not None and text(found) == "1"

    async def owner(self, namespace: str, service: str) -> str | None:
        """The uid of the StatefulRoute that owns the table, if one does."""
        route_keys = self.keyring.route(namespace, service)
        found = await guarded(self._redis.hget(route_keys.config, "owner"), self.timeout)
        return None if found is None else text(found)

    async def instances(self, namespace: str, service: str) -> dict[int, str]:
        """The pod behind each index as last written (``"<pod uid>,<note>"``)."""
        route_keys = self.keyring.route(namespace, service)
        found = await guarded(self._redis.hgetall(route_keys.instances), self.timeout)
        return {int(text(i)): text(v) for i, v in found.items() if text(i).isdigit()}

    async def delete(
        self, namespace: str, service: str, *, owner: str | None = None, keep_service: bool = False
    ) -> None:
        """Remove the table, reports and policy of a route (links are the store's business);
        with ``owner``, only if that owner holds it (else NotOwner). The service leaves its
        namespace's set unless ``keep_service`` (its links stay, and ``get_link_service`` should
        still find them)."""
        route_keys = self.keyring.route(namespace, service)
        _owner(owner)
        validation.flag("keep_service", keep_service)
        await self._run(route_keys, "delete", [], owner=owner)
        await guarded(self._redis.delete(route_keys.phases), self.timeout)
        if not keep_service:
            await self._services.discard(namespace, service)

    async def pods(self, namespace: str, service: str) -> dict[int, PodState]:
        """The effective state of every pod (table combined with the pods' own reports)."""
        return (await self.snapshot(namespace, service)).pods

    async def snapshot(self, namespace: str, service: str) -> RouteSnapshot:
        """Pods, live link counts, available pods and the best pod, read in one atomic call."""
        route_keys = self.keyring.route(namespace, service)
        reply = await guarded(
            self._snapshot(keys=_snapshot_keys(route_keys), args=[route_keys.pod_links]),
            self.timeout,
        )
        return self._decode((namespace, service), reply)

    async def snapshots(self, routes: Sequence[ServiceId]) -> list[RouteSnapshot]:
        """``snapshot`` of several routes (each one atomic read), in one round trip: a pipeline on
        one server; on a cluster, whose pipelines refuse scripts, concurrent calls."""
        if len(routes) <= 1:  # a lookup's read: a plain call costs less than a pipeline
            return [await self.snapshot(ns, service) for ns, service in routes]
        if isinstance(self._redis, RedisCluster):
            return list(await asyncio.gather(*(self.snapshot(ns, service) for ns, service in routes)))
        deadline = self.timeout * (1 + len(routes) // _SNAPSHOTS_PER_TIMEOUT)
        # ``async with``: a read cancelled mid-way (the mirror stopping) still frees its connection.
        async with self._redis.pipeline(transaction=False) as pipe:
            for ns, service in routes:
                route_keys = self.keyring.route(ns, service)
                # Awaiting a command queued on a pipeline only queues it.
                await self._snapshot(
                    keys=_snapshot_keys(route_keys), args=[route_keys.pod_links], client=pipe
                )
            replies = await guarded(pipe.execute(), deadline)
        return [self._decode(route, reply) for route, reply in zip(routes, replies, strict=True)]

    async def versions(self, routes: Sequence[ServiceId]) -> list[int]:
        """Each route's version (0 without one; -1 for a value that is not a version), in one
        round trip: MGETs of their version keys, ``_VERSIONS_PER_MGET`` each so none holds Redis
        long; on a cluster, one MGET per hash slot, pipelined by redis-py."""
        names = [self.keyring.route(ns, service).version for ns, service in routes]
        deadline = self.timeout * (1 + len(routes) // _VERSIONS_PER_TIMEOUT)
        if isinstance(self._redis, RedisCluster):
            replies = await guarded(self._redis.mget_nonatomic(names), deadline)
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(names), _VERSIONS_PER_MGET):
                    pipe.mget(names[start : start + _VERSIONS_PER_MGET])
                parts = await guarded(pipe.execute(), deadline)
            replies = [reply for part in parts for reply in part]
        return [_version(reply) for reply in replies]

    def _decode(self, route: ServiceId, reply: list[Any]) -> RouteSnapshot:
        """The snapshot ``reply`` shows: the one decoded last time if the reply is the same
        (snapshots are shared read-only, as a mirror's view already is by every reader)."""
        known = self._decoded.get(route)
        if known is not None and known[0] == reply:
            return known[1]
        snapshot = _decode_snapshot(reply)
        self._decoded[route] = (reply, snapshot)
        return snapshot

    async def prune(self, namespace: str, service: str, *, within: float | None = None) -> Pruned:
        """Drop the route's expired temporary links and re-score their pods, in calls that each
        prune a bounded number of shards (so none blocks Redis for long, whatever expired), until
        none is due or ``within`` seconds (default ``timeout``) have passed; the next call goes on.
        Afterwards a snapshot's counts are exact (``exact``) unless more expired meanwhile than
        one read counts. The operator calls it for every route each tick."""
        route_keys = self.keyring.route(namespace, service)
        limit = self.timeout if within is None else validation.seconds("within", within, minimum=0)
        deadline = time.monotonic() + limit
        dropped = calls = 0
        while True:
            removed, more = await guarded(
                self._prune(keys=_route(route_keys), args=[route_keys.pod_links]), self.timeout
            )
            dropped, calls = dropped + int(removed), calls + 1
            if not more or time.monotonic() >= deadline:
                return Pruned(dropped, calls, not more)

    async def put_phases(self, namespace: str, service: str, phases: Mapping[int, PodPhase]) -> None:
        """Replace what the operator says about pods beyond the table: terminating (displays) and
        outdated (displays, and hand-offs, which never move a user onto an outdated pod). One
        atomic call, so a reader sees the old or the new phases whole."""
        route_keys = self.keyring.route(namespace, service)
        pairs = [f for i, p in sorted(phases.items()) for f in (str(validation.pod_index(i)), p.encode())]
        await guarded(self._put_phases(keys=[route_keys.phases, route_keys.config], args=pairs), self.timeout)

    async def phases(self, namespace: str, service: str) -> dict[int, PodPhase]:
        """Pods the operator reports as terminating (Handoff) or outdated. Reads the phases of
        either layout (a hash, or layout 1's JSON string until the route is migrated or the
        operator writes them again); a key of any other type is StoreError."""
        route_keys = self.keyring.route(namespace, service)
        flat = await guarded(self._phases(keys=[route_keys.phases, route_keys.config]), self.timeout)
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return {int(text(i)): PodPhase.decode(text(v)) for i, v in pairs if text(i).isdigit()}

    async def reports(self, namespace: str, service: str) -> dict[int, RoutingState]:
        """The routing state each pod reported itself (pods that never reported are absent)."""
        route_keys = self.keyring.route(namespace, service)
        raw = await guarded(self._redis.hgetall(route_keys.reports), self.timeout)
        found: dict[int, RoutingState] = {}
        for index, report in raw.items():
            routing = text(report).partition(",")[0]
            if text(index).isdigit() and routing.isdigit() and int(routing) <= max(RoutingState):
                found[int(text(index))] = RoutingState(int(routing))
        return found

    async def services(self, namespace: str) -> list[str]:
        """Services that have a route table in ``namespace``."""
        return await self._services.members(namespace)

    async def namespaces(self) -> list[str]:
        """Namespaces that have services (a SCAN of the whole keyspace: for rare use)."""
        return await self._services.namespaces()

    async def forget_if_unused(self, namespace: str, service: str) -> bool:
        """Take the service out of its namespace's set if it has neither a table nor links (a
        writer refused for want of a table, or one racing the route's deletion, added it);
        returns whether it was taken out."""
        route_keys = self.keyring.route(namespace, service)
        used = [route_keys.config, route_keys.pods, route_keys.link_counts]
        if await guarded(self._redis.exists(*used), self.timeout):
            return False
        await self._services.discard(namespace, service)
        # Writers add the service before they write: one that wrote meanwhile keeps it listed.
        if await guarded(self._redis.exists(*used), self.timeout):
            await self._services.add(route_keys, again=True)
            return False
        return True

    async def _run(
        self, route_keys: keys.RouteKeys, mode: str, fields: list[str], *, owner: str | None = None
    ) -> bool:
        # Listed before the table is written, so get_link_service never misses a service that has one.
        added = mode != "delete" and await self._services.add(route_keys)
        changed = await guarded(
            self._write(
                keys=[*_table(route_keys), route_keys.available, route_keys.instances],
                args=[
                    mode,
                    route_keys.channel,
                    changes.table_changed(route_keys.service),
                    route_keys.pod_links,
                    owner or "",
                    *fields,
                ],
            ),
            self.timeout,
        )
        if changed < 0:
            if changed == -1 and added:
                # No table (a route deleted meanwhile): take back what this call added, or the
                # set would list a service nothing maintains.
                await self._services.discard(route_keys.namespace, route_keys.service)
            raise NotOwner(route_keys.namespace, route_keys.service, claimed=changed == -2)
        if changed and mode != "delete":
            # A write that changed the table may have rebuilt it in a Redis restarted empty.
            await self._services.add(route_keys, again=True)
        return bool(changed)


def _owner(owner: object) -> None:
    """Input is checked before anything is read or written: a badly typed owner is InvalidInput,
    never a NotOwner from comparing it with the stored one."""
    if owner is not None and (type(owner) is not str or not owner):
        raise validation.invalid("owner", "must be a non-empty str (a StatefulRoute's uid)")


def _snapshot_keys(route_keys: keys.RouteKeys) -> list[str]:
    return [*_table(route_keys), route_keys.available]


def _route(route_keys: keys.RouteKeys) -> list[str]:
    return [route_keys.pods, route_keys.reports, route_keys.config, route_keys.available]


def _table(route_keys: keys.RouteKeys) -> list[str]:
    return [route_keys.pods, route_keys.reports, route_keys.config, route_keys.version]


def _fields(pods: Iterable[PodState], instances: Mapping[int, str], held: Iterable[int]) -> list[str]:
    fields: list[str] = []
    seen: set[int] = set()
    try:
        marked = set(held)
    except TypeError:
        raise validation.invalid("held", f"must be pod indices, got {type(held).__name__}") from None
    for pod in pods:
        if not isinstance(pod, PodState):
            raise validation.invalid("pods", f"must hold PodState items, got {type(pod).__name__}")
        if pod.index in seen:
            raise validation.invalid("pods", f"pod index {pod.index} appears twice")
        seen.add(pod.index)
        held_mark = "1" if pod.index in marked else ""
        fields += [str(pod.index), encode_pod(pod), instances.get(pod.index, ""), held_mark]
    if not marked <= seen:
        raise validation.invalid("held", f"names pods not written: {sorted(marked - seen, key=str)}")
    return fields


def _version(reply: Any) -> int:
    if reply is None:
        return 0
    try:
        return int(reply)
    except ValueError:
        return -1


@functools.lru_cache(maxsize=4096)
def _pod(index: int, ready: int, terminating: int, routing: int, load: int) -> PodState:
    """A pod state as a snapshot encodes it; memoised, since the same few recur in every read
    (a PodState is immutable, and checking its fields costs more than the rest of decoding)."""
    return PodState(index, bool(ready), bool(terminating), RoutingState(routing), load)


def _decode_snapshot(reply: list[Any]) -> RouteSnapshot:
    best, version, born, exact = (int(v) for v in reply[:4])
    pods: dict[int, PodState] = {}
    links: dict[int, int] = {}
    available: set[int] = set()
    for i in range(4, len(reply), 7):
        index, ready, terminating, routing, load, count, is_available = (int(v) for v in reply[i : i + 7])
        pods[index] = _pod(index, ready, terminating, routing, load)
        links[index] = count
        if is_available:
            available.add(index)
    return RouteSnapshot(
        pods, links, frozenset(available), None if best < 0 else best, version, born, exact=bool(exact)
    )
