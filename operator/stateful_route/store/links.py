"""The link store: every read and write of users' links goes through here, one call each."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, cast

from redis.asyncio import RedisCluster
from redis.exceptions import ResponseError

from stateful_route.core import validation
from stateful_route.core.constants import DEFAULT_LINK_TTL, LAYOUT
from stateful_route.core.errors import LayoutTooNew, NoAvailablePod, PodPending, StoreError
from stateful_route.store import changes, keys, scripts
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded
from stateful_route.store.migration import Migrator
from stateful_route.store.replies import text
from stateful_route.store.services import ServiceSet

__all__ = ["BATCH", "HandOff", "Link", "LinkStore", "Outcome", "Placement", "decode_link"]

log = logging.getLogger("stateful_route.store.links")

# Users per MGET / per script call: big enough to amortise a round trip, small enough that
# one call never blocks Redis for long.
BATCH = 1000


class Link(NamedTuple):
    """A stored link: the pod, whether the pod confirmed it, and its remaining TTL (None: none)."""

    pod: int
    persistent: bool
    ttl: float | None


# What ``place`` did: kept the user's routable link, placed a user who had none, or moved
# (rebound) a link off an unroutable pod. The script answers with the index in _OUTCOMES.
Outcome = Literal["kept", "placed", "rebound"]
_OUTCOMES: tuple[Outcome, ...] = ("kept", "placed", "rebound")


class Placement(NamedTuple):
    """The result of ``place``: the pod, the link's remaining TTL in seconds, what happened."""

    pod: int
    ttl: float | None
    outcome: Outcome


class HandOff(NamedTuple):
    """The result of ``hand_off`` for a user linked to the pod: where the link went (None: no other
    pod is available, the link stayed) and its remaining TTL in seconds (None: persistent)."""

    pod: int | None
    ttl: float | None
    outdated: bool = False  # the link stayed as only outdated pods take users (a rolling update)


def decode_link(raw: bytes | str) -> tuple[int, bool]:
    """``b"3"`` → (3, temporary); ``b"3p"`` → (3, persistent)."""
    value = text(raw)
    persistent = value.endswith("p")
    digits = value[:-1] if persistent else value
    if not digits.isdigit():
        raise StoreError(f"corrupt link value {value!r:.40}")
    return int(digits), persistent


def _ttl(ms: int) -> float | None:
    return None if ms < 0 else ms / 1000


class LinkStore:
    """Reads and writes links of users to pods in Redis; every change is one Lua call."""

    def __init__(
        self,
        redis: AnyRedis,
        keyring: keys.Keyring,
        *,
        timeout: float = 1.0,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._redis = redis
        self._cluster = isinstance(redis, RedisCluster)
        self._guarded = guarded if observe is None else _timed(observe)
        self.keyring = keyring
        self.timeout = validation.seconds("timeout", timeout, minimum=0.001)
        self._place = redis.register_script(scripts.PLACE)
        self._place_many = redis.register_script(scripts.PLACE_MANY)
        self._if_absent = redis.register_script(scripts.IF_ABSENT)
        self._read = redis.register_script(scripts.READ)
        self._persist = redis.register_script(scripts.SET_PERSISTENT)
        self._remove = redis.register_script(scripts.REMOVE)
        self._evict = redis.register_script(scripts.EVICT)
        self._count = redis.register_script(scripts.COUNT)
        self._linked = redis.register_script(scripts.LINKED)
        self._hand_off = redis.register_script(scripts.HAND_OFF)
        self.services = ServiceSet(redis, keyring, self.timeout, self._guarded)
        self.migrator = Migrator(redis, keyring, self.timeout, self._guarded)

    async def place(
        self, route_keys: keys.RouteKeys, uid: str, ttl: float, *, exclude: int | None = None
    ) -> Placement | None:
        """Keep the user's routable link, or move/place it on the best available pod; None if none is.

        ``ttl`` is the temporary link's lifetime when the route's policy sets none. ``exclude`` is
        a pod the user must leave: a link to it is moved (compare-and-swap, like a link to an
        unroutable pod) and it is never chosen, even when it is the best pod (eviction with
        rebind, hand-offs). A stored value that is not a link counts as no link: it is replaced
        by a placement (and logged). PodPending while the user, evicted early in a rolling update,
        waits for an updated pod (see ``evict_batch``). Costs O(log pods) in Redis.
        """
        reply = await self._guarded(
            self._place(keys=[route_keys.link(uid)], args=[route_keys.base, _ms(ttl), _excluded(exclude)]),
            self.timeout,
        )
        if reply is None:
            return None
        pod, ttl_ms, outcome, corrupt = reply
        if pod < 0:
            raise PodPending(route_keys.namespace, route_keys.service, int(ttl_ms) / 1000)
        if corrupt:
            log.warning(
                "event=corrupt_link_replaced namespace=%s service=%s uid=%r pod=%d",
                route_keys.namespace, route_keys.service, uid[:80], int(pod),
            )  # fmt: skip
        placed = Placement(int(pod), _ttl(int(ttl_ms)), _OUTCOMES[int(outcome)])
        if placed.outcome == "rebound":
            # Other gateways may cache the old link while their view still calls its pod routable.
            await self._guarded(
                self._redis.publish(route_keys.channel, changes.unlinked(route_keys.service, uid)),
                self.timeout,
            )
        return placed

    async def place_many(
        self, route_keys: keys.RouteKeys, uids: Sequence[str], ttl: float, *, exclude: int | None = None
    ) -> list[int | None]:
        """``place`` for many users (same ``ttl`` and ``exclude``), BATCH per script call, all in
        one round trip; the pod of each user, or None where no pod is available."""

        async def send(client: Any, batch: Sequence[str]) -> Any:
            args: list[str | int] = [
                route_keys.pod_links,
                route_keys.links,
                _ms(ttl),
                _excluded(exclude),
                *batch,
            ]
            return await self._place_many(keys=_route(route_keys), args=args, client=client)

        replies = await self._in_one_trip(send, uids)
        return [None if pod is None else int(pod) for reply in replies for pod in reply]

    async def read(self, route_keys: keys.RouteKeys, uid: str) -> Link | None:
        """The user's link with its remaining TTL (read in one atomic step), or None."""
        raw, ttl_ms = await self._guarded(
            self._read(keys=[route_keys.link(uid), route_keys.config]), self.timeout
        )
        if raw is None:
            return None
        pod, persistent = decode_link(raw)
        return Link(pod, persistent, _ttl(int(ttl_ms)))

    async def read_many(self, route_keys: keys.RouteKeys, uids: Sequence[str]) -> list[int | None]:
        """The pods of many users (None where unlinked): MGET of BATCH keys, one round trip."""

        async def send(client: Any, batch: Sequence[str]) -> Any:
            return await client.mget([route_keys.link(uid) for uid in batch])

        replies = await self._in_one_trip(send, uids)
        raws = [raw for reply in replies for raw in reply]
        return [
            None if raw is None else self._pod_or_none(route_keys, uid, raw)
            for uid, raw in zip(uids, raws, strict=True)
        ]

    def _pod_or_none(self, route_keys: keys.RouteKeys, uid: str, raw: bytes | ResponseError) -> int | None:
        """A batch must not fail for one corrupt value (or a key of another type, whose reply is
        a ResponseError): it is skipped (as no link) and logged."""
        if not isinstance(raw, ResponseError):
            try:
                return decode_link(raw)[0]
            except StoreError:
                pass
        shown = raw[:40] if isinstance(raw, bytes) else str(raw)[:40]
        log.warning(
            "event=corrupt_link_skipped namespace=%s service=%s uid=%r value=%r",
            route_keys.namespace, route_keys.service, uid[:80], shown,
        )  # fmt: skip
        return None

    async def _in_one_trip(
        self, send: Callable[[Any, Sequence[str]], Awaitable[Any]], uids: Sequence[str]
    ) -> list[Any]:
        """``send(client, batch)`` for every BATCH of uids, in one round trip; the replies in order.
        On one server the calls are queued on a pipeline (awaiting a queued command returns the
        pipeline); on a cluster, whose pipelines refuse scripts and MGET, they go concurrently,
        each within its route's one slot. The deadline grows with the number of batches."""
        if not uids:
            return []
        batches = [uids[start : start + BATCH] for start in range(0, len(uids), BATCH)]
        deadline = self.timeout * (1 + len(uids) // BATCH)
        if self._cluster:
            return list(
                await self._guarded(asyncio.gather(*(send(self._redis, b) for b in batches)), deadline)
            )
        pipe = self._redis.pipeline(transaction=False)
        for batch in batches:
            await send(pipe, batch)
        return list(await self._guarded(pipe.execute(), deadline))

    async def link_if_absent(self, route_keys: keys.RouteKeys, uid: str, pod: int, ttl: float) -> Link:
        """Store a temporary link only if the user has none routable; the link after the call,
        with the TTL it has left. ``ttl`` applies when the route's policy sets none.
        NoAvailablePod (nothing written) when the route has no table, or ``pod`` is not one of
        its routable pods."""
        reply = await self._guarded(
            self._if_absent(
                keys=[route_keys.link(uid), *_route(route_keys)],
                args=[route_keys.pod_links, uid, pod, _ms(ttl)],
            ),
            self.timeout,
        )
        if reply is None:
            raise NoAvailablePod(route_keys.namespace, route_keys.service)
        if int(reply[0]) < 0:
            raise NoAvailablePod(route_keys.namespace, route_keys.service, pod=pod)
        linked, ttl_ms, moved = reply
        if moved:
            # Other gateways may cache the old link while their view still calls its pod routable.
            await self._guarded(
                self._redis.publish(route_keys.channel, changes.unlinked(route_keys.service, uid)),
                self.timeout,
            )
        return Link(int(linked), int(ttl_ms) < 0, _ttl(int(ttl_ms)))

    async def link_persistent(
        self, route_keys: keys.RouteKeys, uid: str, pod: int, *, only_if_free: bool
    ) -> tuple[bool, int | None]:
        """Make the link persistent on ``pod``: (stored, previous pod) or (False, holder).
        NoAvailablePod (nothing written) when the route has no table."""
        reply = await self._guarded(
            self._persist(
                keys=[route_keys.link(uid), *_route(route_keys), route_keys.phases],
                args=[
                    route_keys.pod_links,
                    uid,
                    pod,
                    "1" if only_if_free else "0",
                    route_keys.channel,
                    changes.unlinked(route_keys.service, uid),
                ],
            ),
            self.timeout,
        )
        if reply is None:
            raise NoAvailablePod(route_keys.namespace, route_keys.service)
        stored, other = reply
        return bool(stored), None if other is None else int(other)

    async def unlink(
        self, route_keys: keys.RouteKeys, uid: str, *, expected: int | None, keep: float
    ) -> int | None:
        """Remove the link (only if it points to ``expected``, when given), keeping a temporary one
        for ``keep`` seconds; announces it. Returns the pod it pointed to, or None if untouched."""
        reply = await self._guarded(
            self._remove(
                keys=[route_keys.link(uid), *_route(route_keys)],
                args=[
                    route_keys.pod_links,
                    uid,
                    "" if expected is None else expected,
                    _ms(keep) if keep > 0 else 0,
                    route_keys.channel,
                    changes.unlinked(route_keys.service, uid),
                ],
            ),
            self.timeout,
        )
        return None if reply is None else int(reply)

    async def hand_off(
        self, route_keys: keys.RouteKeys, uid: str, pod: int, ttl: float = DEFAULT_LINK_TTL
    ) -> HandOff | None:
        """Move the user's link from ``pod`` to the best available other pod (compare-and-swap:
        only if it still points to ``pod``) and announce it; the link keeps its kind and expiry
        (``ttl`` only for a temporary link that has none, when the route's policy has none).
        A HandOff (``pod`` None when no other pod is available, or only pods the operator marks
        outdated: a rolling update would move the user again), or None if not linked to ``pod``
        (a link value that does not parse is deleted and logged: it routed nobody)."""
        reply = await self._guarded(
            self._hand_off(
                keys=[route_keys.link(uid), *_route(route_keys), route_keys.phases],
                args=[
                    route_keys.pod_links,
                    uid,
                    pod,
                    route_keys.channel,
                    changes.unlinked(route_keys.service, uid),
                    _ms(ttl),
                ],
            ),
            self.timeout,
        )
        if reply is None:
            return None
        if int(reply[0]) == -2:
            log.warning(
                "event=corrupt_link_deleted namespace=%s service=%s pod=%d uid=%r",
                route_keys.namespace, route_keys.service, pod, uid[:80],
            )  # fmt: skip
            return None
        if int(reply[0]) < 0:
            return HandOff(None, None, outdated=int(reply[0]) == -3)
        return HandOff(int(reply[0]), _ttl(int(reply[1])))

    async def linked_users(self, route_keys: keys.RouteKeys, pod: int) -> AsyncIterator[str]:
        """The users linked to ``pod`` (expired temporary links left out), each once, about BATCH at
        a time (the pod's shards in order: users linked or unlinked meanwhile may or may not
        appear; users linked throughout do). Users a layout-1 release linked to the pod are moved
        into its shards first (``Migrator.absorb``), so a hand-off finds them, migrated or not."""
        await self.migrator.absorb(route_keys, pod)
        seen: set[str] = set()
        cursor = 0
        while True:
            cursor, *page = await self._guarded(
                self._linked(
                    keys=[route_keys.pod(pod), route_keys.config],
                    args=[route_keys.pod_links, pod, cursor, BATCH],
                ),
                self.timeout,
            )
            for member in page:
                uid = text(cast(bytes | str, member))
                if uid not in seen:  # a split may move a user to a shard not read yet
                    seen.add(uid)
                    yield uid
            if cursor == 0:
                return

    async def count_linked(self, route_keys: keys.RouteKeys, pod: int) -> int:
        """How many users are linked to ``pod`` now (expired temporary links left out)."""
        return int(
            await self._guarded(
                self._count(keys=[route_keys.pod(pod), route_keys.config], args=[route_keys.pod_links, pod]),
                self.timeout,
            )
        )

    async def evict_batch(
        self, route_keys: keys.RouteKeys, pod: int, batch: int = BATCH, *, hold: float = 0
    ) -> tuple[int, list[str]]:
        """Compare-and-delete up to ``batch`` links to ``pod``: (users left, uids unlinked). With
        ``hold`` (seconds), the users unlinked wait that long at most for a pod that is not
        outdated (``place`` raises PodPending meanwhile; see scripts.PLACE)."""
        left, removed, corrupt = await self._guarded(
            self._evict(
                keys=[route_keys.pod(pod), *_route(route_keys)],
                args=[
                    pod,
                    route_keys.links,
                    batch,
                    route_keys.pod_links,
                    _ms(hold) if hold > 0 else 0,
                    route_keys.waiting,
                ],
            ),
            self.timeout,
        )
        for uid in corrupt:
            log.warning(
                "event=corrupt_link_deleted namespace=%s service=%s pod=%d uid=%r",
                route_keys.namespace, route_keys.service, pod, text(uid)[:80],
            )  # fmt: skip
        return int(left), [text(uid) for uid in removed]

    async def announce_eviction(self, route_keys: keys.RouteKeys, pod: int) -> None:
        """Tell clients every link to ``pod`` is gone (they drop cached links and refetch the table)."""
        await self._guarded(
            self._redis.publish(route_keys.channel, changes.evicted(route_keys.service, pod)), self.timeout
        )

    async def links_of_user(self, namespace: str, uid: str) -> dict[str, int]:
        """Every service of ``namespace`` in which the user has a link: {service: pod}. A stored
        value that is not a link is skipped (and logged): one corrupt key must not hide the others."""
        services = await self.services.members(namespace)
        if not services:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for service in services:
            route_keys = self.keyring.route(namespace, service)
            # The layout after the link: layouts only go up, so a layout this release knows,
            # read after the link, means the link was written in a layout it knows.
            pipe.get(route_keys.link(uid))
            pipe.hget(route_keys.config, "layout")
        # A key of another type fails its own GET only (WRONGTYPE): skipped like a corrupt value.
        replies = await self._guarded(pipe.execute(raise_on_error=False), self.timeout)
        found: dict[str, int] = {}
        for service, raw, layout in zip(services, replies[::2], replies[1::2], strict=True):
            recorded = int(layout) if isinstance(layout, bytes) and layout.isdigit() else 0
            if recorded > LAYOUT:
                raise LayoutTooNew(recorded, LAYOUT)
            if raw is not None:
                pod = self._pod_or_none(self.keyring.route(namespace, service), uid, raw)
                if pod is not None:
                    found[service] = pod
        return found

    async def delete_route(self, route_keys: keys.RouteKeys, *, keep_links: bool = False) -> int:
        """Delete every key of the route, found by its hash-tagged prefix: table, reports, policy,
        version and, unless ``keep_links``, every link and per-pod set, whatever pod they name
        (links to pods no longer in the table included). Returns the number of links deleted.

        The keys share one hash slot, so on a cluster only the node serving it is scanned and
        each UNLINK stays in that slot. Delete the table first (``RouteTable.delete`` announces
        it), so clients stop placing users here before their links go.
        """
        scan: dict[str, Any] = {"match": keys.glob_escape(route_keys.base) + "*", "count": BATCH}
        if isinstance(self._redis, RedisCluster):
            scan["target_nodes"] = self._redis.get_node_from_key(route_keys.base)
        kept = (route_keys.links, route_keys.pod_links)

        async def sweep() -> int:
            links = 0
            doomed: list[str] = []
            async for raw in self._redis.scan_iter(**scan):
                key = text(raw)
                if keep_links and key.startswith(kept):
                    continue
                links += key.startswith(route_keys.links)
                doomed.append(key)
                if len(doomed) == BATCH:
                    await self._redis.unlink(*doomed)
                    doomed.clear()
            if doomed:
                await self._redis.unlink(*doomed)
            return links

        # A scan visits the whole node, so it gets far longer than one call.
        links = await self._guarded(sweep(), self.timeout * 60)
        if not keep_links:
            await self.services.discard(route_keys.namespace, route_keys.service)
        return links


T = TypeVar("T")


def _timed(observe: Callable[[float], None]) -> Callable[[Awaitable[T], float], Awaitable[T]]:
    """``guarded`` that reports how long each call took, faults included."""

    async def timed(call: Awaitable[T], seconds: float) -> T:
        started = time.perf_counter()
        try:
            return await guarded(call, seconds)
        finally:
            observe(time.perf_counter() - started)

    return timed


def _route(route_keys: keys.RouteKeys) -> list[str]:
    """The keys a script needs to read pods and re-score them: table, reports, policy, available set."""
    return [route_keys.pods, route_keys.reports, route_keys.config, route_keys.available]


def _excluded(pod: int | None) -> str:
    return "" if pod is None else str(validation.pod_index(pod, "exclude"))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
