"""The client's mirror of route tables: refreshed by the change channel at once, and polled.

Two mechanisms keep a view fresh: every change to a table is published on the namespace's
pub/sub channel and applied as soon as it arrives, and every ``refresh_interval`` a pass checks
every view in case a message was lost. A view older than ``max_age`` is never used: it is
re-read before answering, so a stalled mirror turns into StoreUnavailable, not stale answers.

A pass reads only each route's version (MGETs: about a microsecond of Redis per route) and
re-reads the snapshot of the routes whose version moved. Every change of a route's pods or
routing states bumps its version, so an unchanged version renews the view's routability (what
lookups answer from: ``valid_until``). Link counts, availability and the best pod change without
a new version (placements, loads, a cap): their age is the snapshot's own (``whole_until``), and
a call that answers from them re-reads a snapshot older than ``max_age`` first. Each route's
snapshot is also re-read at least every ``_SNAPSHOT_EVERY`` passes (spread over the passes by
route), which bounds what no version shows (a table Redis lost and rebuilt up to the very same
version while its message was lost too).

Bounded work: only routes whose table exists are followed (a name without one gets no view), and
only while someone asks about them (``following.Followed``). A message applies its routability
at once and marks its route for a re-read; one task re-reads every marked route in one round
trip, so a flood of messages about a route costs one read, not one per message, and the channel
is never left waiting behind reads. A pass over every followed route keeps two round trips in
flight (Redis runs one while this process encodes or decodes the other), and a snapshot equal to
the route's last one is not decoded again (``RouteTable``), so an idle pass costs little more
than the reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.client import PubSub

from stateful_route.core import validation
from stateful_route.core.errors import StoreUnavailable
from stateful_route.core.state import RouteSnapshot, ServiceId
from stateful_route.gateway.following import Followed
from stateful_route.gateway.metrics import ClientMetrics
from stateful_route.store import changes, keys
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded, typed
from stateful_route.store.replies import text
from stateful_route.store.table import RouteTable

__all__ = ["RouteMirror", "RouteView"]

log = logging.getLogger("stateful_route.gateway.mirror")

# Reads of one view before giving up: each is rejected only if a newer change arrived meanwhile.
_ATTEMPTS = 3
# Routes re-read per round trip (one pipeline of snapshots), and round trips in flight at once.
_READS_PER_TRIP = 256
_TRIPS = 2
# Messages already received taken at once before the listener yields to other tasks.
_BUFFERED = 1000
# Each route's snapshot is re-read by at least one of this many consecutive passes.
_SNAPSHOT_EVERY = 10


async def _stopped(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` until each is done: a cancellation that lands while a timeout inside
    redis-py fires can be swallowed (Python 3.11), so one is not enough (asyncio.TaskGroup
    cancels its tasks once, and would then wait forever)."""
    while pending := {task for task in tasks if not task.done()}:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:  # a cancellation may have ended in an error: read, so none goes unretrieved
        if not task.cancelled():
            task.exception()


def exists(snapshot: RouteSnapshot) -> bool:
    """Whether a snapshot shows a route table: pods, or the mark of its first write (``born``,
    which a table of no pods has too; a deleted table has neither, its version survives)."""
    return bool(snapshot.pods) or snapshot.born != 0


@dataclass(frozen=True, slots=True)
class RouteView:
    """A snapshot of one route as the client sees it, and until when it may be trusted."""

    snapshot: RouteSnapshot
    routable: frozenset[int]
    # Until when routability (and all the version decides: the pods and their states) may be
    # trusted: max_age after the start of the last read or version check that confirmed it.
    valid_until: float
    version: int
    ticket: int = 0  # when the mirror learnt it, in the order of its own reads and messages
    # Routability from a change message over an older snapshot (pods, availability, best pod),
    # until the snapshot is read again.
    partial: bool = False
    # Until when the rest of the snapshot (link counts, availability, the best pod) may be
    # trusted: max_age after the start of its read.
    whole_until: float = 0.0

    def renewed(self, valid_until: float) -> RouteView:
        """This view with its routability trusted until ``valid_until`` (built directly: a pass
        renews thousands, where ``dataclasses.replace`` costs twice as much)."""
        return RouteView(
            self.snapshot,
            self.routable,
            valid_until,
            self.version,
            self.ticket,
            self.partial,
            self.whole_until,
        )


class RouteMirror:
    """Keeps ``views`` — ``{namespace: {service: RouteView}}`` for the existing routes this client
    asked about within ``keep`` seconds, at most ``max_routes`` — fresh. Nested rather than keyed
    by a tuple, for the client's hit path, which reads it on every lookup (BENCHMARKS.md,
    figure 1)."""

    def __init__(
        self,
        redis: AnyRedis,
        table: RouteTable,
        *,
        namespaces: Iterable[str],
        clock: Callable[[], float],
        refresh_interval: float,
        max_age: float,
        keep: float,
        max_routes: int,
        on_change: Callable[[str, changes.Change], None],
        on_lost: Callable[[str, str, frozenset[int]], None],
        on_gap: Callable[[], None],
        metrics: ClientMetrics | None = None,
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
        self._change_lag = getattr(metrics, "change_lag", None)
        self._view_lag = getattr(metrics, "view_lag", None)
        self._pass = getattr(metrics, "mirror_pass", None)
        self.followed = Followed(max_routes, keep, clock)
        # Routes a message changed since their last read: when the earliest such message was
        # published (Redis clock, seconds; None: unknown).
        self._dirty: dict[ServiceId, float | None] = {}
        self._wake = asyncio.Event()
        self._resync = False
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()  # the listener and the re-reader
        self._reconnected = False
        self._tickets = itertools.count(1)
        self.views: dict[str, dict[str, RouteView]] = {ns: {} for ns in self._channels.values()}
        self.connected = asyncio.Event()
        self.reads = 0  # snapshots read, for tests and benchmarks
        self.probes = 0  # versions read by passes, likewise

    async def start(self) -> None:
        """Start following the change channels (in the background; faults are retried there)."""
        self._task = asyncio.create_task(self._run(), name="stateful-route-mirror")

    async def stop(self) -> None:
        """Stop following and release the pub/sub connection."""
        task, self._task = self._task, None
        await _stopped({task} if task is not None else set())
        await _stopped(self._workers)  # cancelled with their parent, unless it could not wait
        await self._close()

    async def view(self, namespace: str, service: str, *, whole: bool = True) -> RouteView:
        """A trustworthy view of a route: the mirrored one while under ``max_age``, else one read
        now. Never a view older than ``max_age``, whatever its version. ``whole=False`` asks only
        for routability under ``max_age`` (its snapshot's counts, availability and best pod may
        be older, or older than its routability); the whole view's snapshot is under ``max_age``.
        A route without a table gets a view of no pods, read now and not kept: nobody follows it."""
        found = self.views[namespace].get(service)
        if found is not None:
            self.followed.ask((namespace, service))
            if self._fresh(found, whole):
                return found
        for _ in range(_ATTEMPTS):
            # What a read installs may be a newer view that arrived meanwhile (a change message),
            # which keeps the age of the snapshot it amends: read again until one is fresh.
            found = await self._refresh((namespace, service))
            if self._fresh(found, whole):
                return found
        raise StoreUnavailable(f"no view of {namespace}/{service} younger than max_age could be read")

    def _fresh(self, view: RouteView, whole: bool) -> bool:
        now = self._clock()
        if whole:
            return view.whole_until > now and view.valid_until > now and not view.partial
        return view.valid_until > now

    async def _refresh(self, service_id: ServiceId) -> RouteView:
        return (await self._read([service_id]))[0]

    async def _read(self, routes: Sequence[ServiceId]) -> list[RouteView]:
        """Read the routes' snapshots in one round trip and install them."""
        tickets = [next(self._tickets) for _ in routes]
        started = self._clock()
        snapshots = await self._table.snapshots(routes)
        self.reads += len(routes)
        return [
            self._learnt(route, snapshot, ticket, started)
            for route, snapshot, ticket in zip(routes, snapshots, tickets, strict=True)
        ]

    def _learnt(self, route: ServiceId, snapshot: RouteSnapshot, ticket: int, started: float) -> RouteView:
        until = started + self._max_age
        fresh = RouteView(snapshot, snapshot.routable, until, snapshot.version, ticket, False, until)
        views = self.views[route[0]]
        current = views.get(route[1])
        if not exists(snapshot):
            # No table: no view to keep. One that was kept is dropped (the route was deleted,
            # or Redis lost it), unless a message newer than this read arrived meanwhile.
            if current is not None and ticket > current.ticket:
                self._forget(route)
            return fresh if current is None or ticket > current.ticket else current
        if current is None:
            self.followed.ask(route)
            self._forget_evicted()
        return self._install(route, fresh, read=True)

    def _forget(self, route: ServiceId, *, links: bool = True) -> None:
        """Stop following a route: its view goes, and with ``links`` the links cached to its pods
        (a view read later could not tell whether Redis lost them meanwhile)."""
        view = self.views[route[0]].pop(route[1], None)
        self.followed.pop(route, None)
        self._dirty.pop(route, None)
        if links and view is not None and view.routable:
            self._on_lost(*route, view.routable)

    def _forget_evicted(self) -> None:
        for route in self.followed.take_evicted():
            self._forget(route)

    def _forget_idle(self) -> None:
        """Forget the routes nobody asked about for ``keep`` seconds. ``keep`` is at least the
        cache's TTL, and a link is cached only after its route was asked about, so none of
        their cached links is still live: no need to look for them."""
        for route in self.followed.take_expired():
            if route not in self.followed:  # not asked about again meanwhile
                self._forget(route, links=False)

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

    async def _run(self) -> None:
        while True:
            try:
                await self._subscribe()
                self._workers = {asyncio.create_task(self._listen()), asyncio.create_task(self._reread())}
                try:
                    done, _ = await asyncio.wait(self._workers, return_when=asyncio.FIRST_COMPLETED)
                    for worker in done:
                        worker.result()  # its fault, resynced below
                finally:
                    await _stopped(self._workers)
            except Exception as exc:  # the mirror outlives any fault but its own cancellation
                log.warning("event=mirror_fault error=%r action=resync", str(typed(exc)))
                self.connected.clear()
                for views in self.views.values():
                    views.clear()
                self._dirty.clear()
                self._on_gap()
                await self._close()
                await asyncio.sleep(self._interval)

    async def _listen(self) -> None:
        """Apply messages as they come; never waits for a read."""
        while True:
            assert self._pubsub is not None
            message = await guarded(
                self._pubsub.get_message(ignore_subscribe_messages=True, timeout=self._interval),
                self._interval + self._table.timeout,
            )
            if message is not None:
                self._apply(message)
                await self._apply_buffered()
            if self._take_reconnected():  # messages may have been lost meanwhile
                self._on_gap()
                self._resync = True
                self._wake.set()

    async def _apply_buffered(self) -> None:
        """Apply, in order, the messages already received whole: taken from the connection's
        hiredis reader at once, rather than one ``get_message`` each (whose read path, with its
        timeouts and retries, cost more than the message in a flood). Replies other than messages
        go through redis-py's own handling (subscriptions, pongs). Without hiredis, nothing here:
        each message then comes through ``get_message``."""
        assert self._pubsub is not None
        reader = getattr(getattr(self._pubsub.connection, "_parser", None), "_reader", None)
        if reader is None:
            return
        handle: Any = self._pubsub.handle_message  # untyped in redis-py
        for _ in range(_BUFFERED):
            reply = reader.gets()
            if reply is False or type(reply) is object:
                return  # no whole reply left: hiredis's False, or the bare sentinel redis-py gives it
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, list) and len(reply) == 3 and text(reply[0]) == "message":
                self._apply({"channel": reply[1], "data": reply[2]})
                continue
            message = await handle(reply, ignore_subscribe_messages=True)
            if message is not None and message.get("type") == "message":
                self._apply(message)

    async def _reread(self) -> None:
        """Re-read the routes messages changed, as soon as any did, all in one round trip (so
        messages that arrived meanwhile are covered by one read), and pass over every followed
        route each ``refresh_interval`` (``_probe``; after a gap, re-read them all). Routes
        nobody asked about for ``keep`` seconds are forgotten."""
        loop = asyncio.get_running_loop()
        every = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, every - loop.time()))
            self._wake.clear()
            started = loop.time()
            full = self._resync or started >= every
            if full:
                resync, self._resync = self._resync, False
                self._forget_idle()
                routes = list(self.followed)
                every = started + self._interval
                if not resync:
                    routes = await self._probe(routes)
            else:
                routes = []
            published = self._dirty
            self._dirty = {}
            # With the routes messages marked, those marked while the versions were read too.
            routes = list({*routes, *published}) if published else routes
            parts = iter(
                [routes[start : start + _READS_PER_TRIP] for start in range(0, len(routes), _READS_PER_TRIP)]
            )
            # Trips share the parts, so Redis runs one while this process encodes or decodes another.
            trips = [self._read_parts(parts, published) for _ in range(_TRIPS)]
            for outcome in await asyncio.gather(*trips, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
            if full and self._pass is not None:
                self._pass(loop.time() - started)

    async def _probe(self, routes: list[ServiceId]) -> list[ServiceId]:
        """Read the versions of ``routes``, renew the routability of each view whose version did
        not move, and return the routes whose snapshot is to be read: those without a view, those
        whose version moved, and those whose turn for a snapshot came since their last one (each
        route has a turn every ``_SNAPSHOT_EVERY`` passes, at a phase its hash spreads them over,
        so each pass reads about as many)."""
        if not routes:
            return []
        started = self._clock()
        versions = await self._table.versions(routes)
        self.probes += len(routes)
        until = started + self._max_age
        period = self._interval * _SNAPSHOT_EVERY
        due: list[ServiceId] = []
        for route, version in zip(routes, versions, strict=True):
            views = self.views[route[0]]
            view = views.get(route[1])  # as it is now: a message may have moved it meanwhile
            if view is None or view.version != version:
                due.append(route)
                continue
            phase = (hash(route) % 4096) / 4096 * period
            turn = started - (started - phase) % period  # this route's latest turn
            if view.whole_until - self._max_age < turn:
                due.append(route)
            elif view.valid_until < until:
                # The version read after ``started`` is the view's: so was its routability.
                views[route[1]] = view.renewed(until)
        return due

    async def _read_parts(
        self, parts: Iterator[list[ServiceId]], published: dict[ServiceId, float | None]
    ) -> None:
        """Read parts of a pass until none is left (or one fails); report the lag of each view
        a message had marked."""
        for part in parts:
            await self._read(part)
            if self._view_lag is not None:
                now = time.time()
                for route in part:
                    at = published.get(route)
                    if at is not None:
                        self._view_lag(now - at)

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

    def _apply(self, message: dict[str, Any]) -> None:
        namespace = self._channels.get(text(message.get("channel", "")))
        change = changes.parse(message.get("data", b""))
        if namespace is None or change is None:
            return
        self._on_change(namespace, change)
        service_id = (namespace, change.service)
        if change.kind is changes.ChangeKind.UNLINKED:
            return
        view = self.views[namespace].get(change.service)
        if view is None:
            return  # not followed: a lookup reads it afresh
        if change.routable is not None and change.version is not None:
            # Routability rides on the message: applied now and in publication order, before
            # the rest of the snapshot (availability, counts) is re-read.
            learnt = replace(
                view,
                routable=change.routable,
                version=change.version,
                ticket=next(self._tickets),
                partial=True,
            )
            self._install(service_id, learnt, read=False)
            if change.at is not None and self._change_lag is not None:
                self._change_lag(time.time() - change.at)
        # Superseded messages coalesce: the route is re-read once, however many arrive.
        self._dirty.setdefault(service_id, change.at)
        self._wake.set()

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self._table.timeout)
