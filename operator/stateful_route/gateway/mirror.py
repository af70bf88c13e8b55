"""The client's mirror of route tables: refreshed by the change channel at once, and polled.

Two mechanisms keep a view fresh: every change to a table is published on the namespace's
pub/sub channel and applied as soon as it arrives, and every view is re-read each
``refresh_interval`` in case a message was lost. A view older than ``max_age`` is never used:
it is re-read before answering, so a stalled mirror turns into StoreUnavailable, not stale answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.client import PubSub

from stateful_route.core import validation
from stateful_route.core.errors import StoreUnavailable
from stateful_route.core.state import RouteSnapshot, ServiceId
from stateful_route.store import changes, keys
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded, typed
from stateful_route.store.replies import text
from stateful_route.store.table import RouteTable

__all__ = ["RouteMirror", "RouteView"]

log = logging.getLogger("stateful_route.gateway.mirror")

# Reads of one view before giving up: each is rejected only if a newer change arrived meanwhile.
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RouteView:
    """A snapshot of one route as the client sees it, and until when it may be trusted."""

    snapshot: RouteSnapshot
    routable: frozenset[int]
    valid_until: float
    version: int
    ticket: int = 0  # when the mirror learnt it, in the order of its own reads and messages
    # Routability from a change message over an older snapshot (pods, availability, best pod),
    # until the snapshot is read again.
    partial: bool = False


class RouteMirror:
    """Keeps ``views`` — ``{namespace: {service: RouteView}}`` for every route this client has
    used — fresh. Nested rather than keyed by a tuple, for the client's hit path, which reads it
    on every lookup (BENCHMARKS.md, figure 1)."""

    def __init__(
        self,
        redis: AnyRedis,
        table: RouteTable,
        *,
        namespaces: Iterable[str],
        clock: Callable[[], float],
        refresh_interval: float,
        max_age: float,
        on_change: Callable[[str, changes.Change], None],
        on_lost: Callable[[str, str, frozenset[int]], None],
        on_gap: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._table = table
        self._channels = {
            keys.changes_channel(table.keyring.prefix, validation.dns_label("namespace", ns)): ns
            for ns in namespaces
        }
        self._clock = clock
        self._interval = refresh_interval
        self._max_age = max_age
        self._on_change = on_change
        self._on_lost = on_lost
        self._on_gap = on_gap
        self._followed: set[ServiceId] = set()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnected = False
        self._tickets = itertools.count(1)
        self.views: dict[str, dict[str, RouteView]] = {ns: {} for ns in self._channels.values()}
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Start following the change channels (in the background; faults are retried there)."""
        self._task = asyncio.create_task(self._run(), name="stateful-route-mirror")

    async def stop(self) -> None:
        """Stop following and release the pub/sub connection."""
        task, self._task = self._task, None
        # A cancellation that lands while a timeout inside redis-py fires can be swallowed
        # (Python 3.11), so cancel until the task is really done.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        await self._close()

    async def view(self, namespace: str, service: str, *, whole: bool = True) -> RouteView:
        """A trustworthy view of a route: the mirrored one while under ``max_age``, else one read
        now. Never a view older than ``max_age``, whatever its version. ``whole=False`` accepts a
        view whose routability is newer than the rest of its snapshot (enough for routability)."""
        found = self.views[namespace].get(service)
        if found is not None and found.valid_until > self._clock() and not (whole and found.partial):
            return found
        for _ in range(_ATTEMPTS):
            # What a read installs may be a newer view that arrived meanwhile (a change message),
            # which keeps the age of the snapshot it amends: read again until one is fresh.
            found = await self._refresh((namespace, service))
            if found.valid_until > self._clock() and not (whole and found.partial):
                return found
        raise StoreUnavailable(f"no view of {namespace}/{service} younger than max_age could be read")

    async def _refresh(self, service_id: ServiceId) -> RouteView:
        ticket = next(self._tickets)
        started = self._clock()
        snapshot = await self._table.snapshot(*service_id)
        self._followed.add(service_id)
        fresh = RouteView(snapshot, snapshot.routable, started + self._max_age, snapshot.version, ticket)
        return self._install(service_id, fresh, read=True)

    def _install(self, service_id: ServiceId, view: RouteView, *, read: bool) -> RouteView:
        """Keep the newer of two views (a slow read must not undo a change applied meanwhile),
        and report pods that stopped being routable: links cached to them are suspect.

        A read that began after the current view was learnt and finds the version gone back or
        the route born again (Redis lost its data: a flush, a failover to a replica that was
        behind; or the route was deleted and written again) is the truth, and every cached link
        is suspect, since the links it named may be gone."""
        views = self.views[service_id[0]]
        current = views.get(service_id[1])
        if current is not None:
            if (
                read
                and view.ticket > current.ticket
                and (view.version < current.version or view.snapshot.born != current.snapshot.born)
            ):
                log.warning(
                    "event=route_data_lost namespace=%s service=%s version=%d->%d born=%d->%d "
                    "action=forget_cache",
                    *service_id,
                    current.version,
                    view.version,
                    current.snapshot.born,
                    view.snapshot.born,
                )
                views[service_id[1]] = view
                self._on_gap()
                return view
            if view.version < current.version or (not read and view.version == current.version):
                return current  # older, or a message about what the current view already shows
        views[service_id[1]] = view
        if current is not None and (lost := current.routable - view.routable):
            self._on_lost(*service_id, lost)
        return view

    async def _refresh_all(self) -> None:
        for service_id in list(self._followed):
            await self._refresh(service_id)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._subscribe()
                next_refresh = loop.time()
                while True:
                    wait = max(0.0, next_refresh - loop.time())
                    assert self._pubsub is not None
                    message = await guarded(
                        self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait),
                        wait + self._table.timeout,
                    )
                    if message is not None:
                        await self._apply(message)
                    if self._take_reconnected():  # messages may have been lost meanwhile
                        self._on_gap()
                        next_refresh = loop.time()
                    if loop.time() >= next_refresh:
                        await self._refresh_all()
                        next_refresh = loop.time() + self._interval
            except Exception as exc:  # the mirror outlives any fault but its own cancellation
                log.warning("event=mirror_fault error=%r action=resync", str(typed(exc)))
                self.connected.clear()
                for views in self.views.values():
                    views.clear()
                self._on_gap()
                await self._close()
                await asyncio.sleep(self._interval)

    async def _subscribe(self) -> None:
        if isinstance(self._redis, RedisCluster):
            # A cluster client learns its slots on first use; its pub/sub needs them already.
            await guarded(self._redis.initialize(), self._table.timeout)
        self._pubsub = self._redis.pubsub()
        await guarded(self._pubsub.subscribe(*self._channels), self._table.timeout)
        # redis-py reconnects a pub/sub connection by itself; hear of it, since messages sent
        # meanwhile are lost.
        connection: Any = self._pubsub.connection
        if connection is not None:
            connection.register_connect_callback(self._on_reconnect)
        # Anything cached before this subscription may have missed messages.
        self._on_gap()
        self.connected.set()

    async def _on_reconnect(self, _connection: Any) -> None:
        self._reconnected = True

    def _take_reconnected(self) -> bool:
        reconnected, self._reconnected = self._reconnected, False
        return reconnected

    async def _apply(self, message: dict[str, Any]) -> None:
        namespace = self._channels.get(text(message.get("channel", "")))
        change = changes.parse(message.get("data", b""))
        if namespace is None or change is None:
            return
        self._on_change(namespace, change)
        service_id = (namespace, change.service)
        if change.kind is changes.ChangeKind.UNLINKED or service_id not in self._followed:
            return
        view = self.views[namespace].get(change.service)
        if view is not None and change.routable is not None and change.version is not None:
            # Routability rides on the message: applied now and in publication order, before
            # the rest of the snapshot (availability, counts) is re-read.
            learnt = RouteView(
                view.snapshot, change.routable, view.valid_until, change.version, next(self._tickets), True
            )
            self._install(service_id, learnt, read=False)
        await self._refresh(service_id)

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self._table.timeout)
