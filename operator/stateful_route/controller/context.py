"""What the kopf handlers share through kopf's memo: the Redis connection and reconciler, the
metrics, and what they remember between calls (status writes, warnings given, the census)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from stateful_route.controller import census, route_check
from stateful_route.controller.census import Census
from stateful_route.controller.config import OperatorConfig
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.controller.migrations import MigrationReport
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.reconciler import Reconciler, Result
from stateful_route.controller.rollouts import StatefulSetRecord
from stateful_route.controller.spec import Listed, RouteRef
from stateful_route.core.errors import StatefulRouteError, StoreUnavailable
from stateful_route.store import connection
from stateful_route.store.connection import AnyRedis

__all__ = ["Coalescer", "OperatorContext", "Seen", "StatusThrottle", "WarnOnce"]

log = logging.getLogger("stateful_route.operator")
T = TypeVar("T")
R = TypeVar("R")


class StatusThrottle:
    """Writes a route's status only when it changed and the last write is ``interval`` old.

    Keyed by the route's uid: a route deleted and created again under the same name is another
    object, whose status must be written even if it equals the old one's."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._written: dict[str, tuple[float, dict[str, Any]]] = {}

    def due(self, route: RouteRef, new: dict[str, Any]) -> bool:
        """Whether to write ``new`` now (if so, it counts as written)."""
        last = self._written.get(route.uid)
        now = self._clock()
        if last is not None and (last[1] == new or now - last[0] < self._interval):
            return False
        self._written[route.uid] = (now, new)
        return True

    def forget(self, route: RouteRef) -> None:
        """Drop what was written for a deleted route."""
        self._written.pop(route.uid, None)


class WarnOnce:
    """Remembers what each object (a pod's bad annotation, a route's conflict) was warned about,
    by uid, so a warning is told once."""

    def __init__(self) -> None:
        self._told: dict[str, str] = {}

    def first(self, uid: str, value: str) -> bool:
        """Whether ``value`` is news for this object (if so, it counts as told)."""
        if self._told.get(uid) == value:
            return False
        self._told[uid] = value
        return True

    def forget(self, uid: str) -> None:
        """The object's trouble is over (or the object gone): a new one is news again."""
        self._told.pop(uid, None)


class Seen(Generic[R]):
    """Each object's record (a pod's, a StatefulSet's) as last reconciled, by uid. An event that
    changes nothing the operator reads of it (another annotation, a status field such as a
    StatefulSet's ready count, kopf's own re-listing) changes no table, so it costs a comparison
    instead of a reconciliation; the route's tick reconciles every second whatever the events."""

    def __init__(self) -> None:
        self._seen: dict[str, R] = {}

    def news(self, kind: str | None, uid: str, record: R | None) -> bool:
        """Whether this event (its ``type``; None when kopf lists) may change a table."""
        if record is None:
            return True
        if kind == "DELETED":
            self._seen.pop(uid, None)
            return True
        return self._seen.get(uid) != record

    def handled(self, uid: str, record: R | None) -> None:
        """The record was reconciled (or a reconciliation that reads it is under way)."""
        if record is not None:
            self._seen[uid] = record


class Coalescer:
    """One reconciliation running and at most one waiting, per route. A burst of pod events (a
    storm: 200 pods deleted, a rolling update) would otherwise queue one reconciliation per
    event, each listing the pods and writing the table, and the table would trail the pods by
    the length of the queue. The waiting one reads kopf's index when it starts, after every
    event that found it waiting, so those events have nothing left to do."""

    def __init__(self) -> None:
        self._waiting: set[str] = set()
        # Held by the coroutines that use them: a route's lock goes once nobody waits on it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def run(self, key: str, work: Callable[[], Awaitable[None]]) -> bool:
        """Run ``work`` for ``key``, after the run under way if any, unless another run already
        waits (which does the same work later); whether it ran."""
        if key in self._waiting:
            return False
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._waiting.add(key)
        try:
            async with lock:
                self._waiting.discard(key)
                await work()
        finally:
            self._waiting.discard(key)
        return True


@dataclass
class OperatorContext:
    """Shared by every handler through kopf's memo."""

    config: OperatorConfig
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    warnings: WarnOnce = field(default_factory=WarnOnce)
    seen_pods: Seen[PodRecord] = field(default_factory=Seen)
    seen_stateful_sets: Seen[StatefulSetRecord] = field(default_factory=Seen)
    coalescer: Coalescer = field(default_factory=Coalescer)
    status: StatusThrottle = field(init=False)
    census: Census = field(init=False)
    namespaces: tuple[str, ...] = ()  # those watched; none: every namespace
    redis: AnyRedis | None = None
    reconciler: Reconciler | None = None
    # told of each route migration's start, end and failure (the handlers post them as events)
    on_migration: Callable[[RouteRef, MigrationReport], None] | None = None
    closed: bool = False
    _swept: dict[str, float] = field(default_factory=dict, init=False)  # namespace -> last sweep
    # Handlers inside ``counted`` (their Redis work), and whether there are none.
    _busy: int = field(default=0, init=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self._idle.set()
        config = self.config
        self.status = StatusThrottle(config.status_interval)
        self.census = Census(
            config.kubeconfig, interval=config.census_interval, margin=config.census_clock_margin
        )

    async def open(self) -> Reconciler:
        """Connect to Redis (once); after ``close``, StoreUnavailable (the operator is stopping)."""
        if self.closed:
            # A handler outliving the operator's cleanup must not open a connection nobody closes.
            raise StoreUnavailable("the operator is stopping")
        if self.reconciler is None:
            self.redis = connection.connect(self.config.redis_url)
            self.reconciler = Reconciler(
                self.redis,
                prefix=self.config.prefix,
                timeout=self.config.redis_timeout,
                on_leave=self.metrics.forget_route,  # no series of a service no longer maintained
                on_migration=self.on_migration,
            )
        return self.reconciler

    async def close(self) -> None:
        """Disconnect from Redis, for good."""
        self.closed = True
        # A handler still at work (kopf orphans a timer slower than its exit timeout) finishes on
        # the client it holds: closed under it, the client would reconnect a connection nobody closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.config.redis_timeout)
        if self.redis is not None:
            await self.redis.aclose()
        self.redis = self.reconciler = None
        self.census.close()

    async def listed(self, route: RouteRef, selector: str | None = None) -> list[PodRecord] | None:
        """The route's pods as the API server lists them now (those ``selector`` matches, if
        given: its StatefulSet's); None (logged) if it cannot say."""
        listing = census.listed_records(
            route.namespace,
            route.spec.stateful_set,
            self.config.kubeconfig,
            selector=selector,
            client=self.census.client,
        )
        return await _asked(route, listing)

    async def exists(self, route: RouteRef) -> bool | None:
        """Whether the API server still lists the route; None (logged) if it cannot say."""
        return await _asked(
            route, route_check.route_exists(route.namespace, route.uid, self.config.kubeconfig)
        )

    def sweep_due(self, namespace: str) -> bool:
        """Whether the namespace's tables should be swept now (every census interval; if so, the
        sweep counts as done)."""
        now = time.monotonic()
        if now - self._swept.get(namespace, float("-inf")) < self.config.census_interval:
            return False
        self._swept[namespace] = now
        return True

    async def sweep(self, namespace: str) -> None:
        """Remove the namespace's orphaned tables (``Reconciler.sweep``). A safety net: a fault is
        logged, never raised, and the next sweep tries again."""
        kubeconfig = self.config.kubeconfig

        async def listed() -> Listed | None:
            try:
                return await route_check.listed_routes(namespace, kubeconfig)
            except Exception as exc:
                log.warning("event=list_failed namespace=%s action=sweep error=%r", namespace, str(exc))
                return None

        try:
            with self._working():
                removed = await (await self.open()).sweep(namespace, listed)
        except StatefulRouteError as exc:
            log.warning("event=sweep_failed namespace=%s error=%r", namespace, str(exc))
            return
        for service in removed:
            log.warning("event=orphan_removed namespace=%s service=%s", namespace, service)

    async def sweep_all(self) -> None:
        """Sweep every watched namespace (all those with services, when every one is watched)."""
        try:
            with self._working():
                namespaces = self.namespaces or tuple(await (await self.open()).table.namespaces())
        except StatefulRouteError as exc:
            log.warning("event=sweep_failed namespace=* error=%r", str(exc))
            return
        for namespace in namespaces:
            self._swept[namespace] = time.monotonic()
            await self.sweep(namespace)

    async def gone(self, namespace: str, uid: str) -> None:
        """A route vanished from the API server: remove the tables it still owns, whichever path
        its deletion took (its deletion handler did, and then there are none)."""
        try:
            with self._working():
                removal = await (await self.open()).disown(namespace, uid)
        except StatefulRouteError as exc:  # the next sweep removes them
            log.warning("event=sweep_failed namespace=%s error=%r", namespace, str(exc))
            return
        if removal.pods or removal.links:
            log.warning(
                "event=orphan_removed namespace=%s owner=%s links_removed=%d", namespace, uid, removal.links
            )
        # A gateway or pod racing the deletion may have listed the service again afterwards.
        await self.sweep(namespace)

    @contextlib.contextmanager
    def counted(self, route: RouteRef, handler: str, *, timed: bool = True) -> Iterator[None]:
        """Time a handler's Redis work (unless not ``timed``); a fault (StatefulRouteError) is
        counted, logged and raised."""
        timer = self.metrics.handler_seconds.labels(handler).time() if timed else contextlib.nullcontext()
        with self._working(), timer:
            try:
                yield
            except StatefulRouteError as exc:
                self.metrics.redis_errors.labels(handler).inc()
                log.warning(
                    "event=reconcile_failed namespace=%s route=%s handler=%s error=%r",
                    route.namespace, route.name, handler, str(exc),
                )  # fmt: skip
                raise

    @contextlib.contextmanager
    def _working(self) -> Iterator[None]:
        """Redis work under way: ``close`` waits for it to end before closing the client."""
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def reconcile(
        self,
        route: RouteRef,
        records: Iterable[PodRecord],
        stateful_set: StatefulSetRecord | None,
        handler: str,
    ) -> Result | None:
        """Reconcile one route, timed per ``handler``; the outcome goes to metrics and logs, and a
        fault (StatefulRouteError) is counted, logged and raised. None when the reconciler
        skipped it (a stale spec, a refused or a deleted route)."""
        with self.counted(route, handler):
            result = await (await self.open()).reconcile(
                route,
                records,
                stateful_set,
                confirm=lambda: self.listed(route, None if stateful_set is None else stateful_set.selector),
                exists=lambda: self.exists(route),
            )
        if result is None:
            return None
        metrics = self.metrics
        service = route.spec.service
        metrics.reconciled(route.namespace, service, result.snapshot, result.evictions, result.wrote)
        metrics.forget(route.namespace, service, sorted(result.plan.gone))
        for eviction in result.evictions:
            log.info(
                "event=evicted namespace=%s route=%s pod=%d removed=%d rebound=%d reason=%r",
                route.namespace, route.name, eviction.pod, eviction.removed, eviction.rebound,
                eviction.reason,
            )  # fmt: skip
        if result.rebound_later:
            metrics.rebinds.labels(route.namespace, service).inc(result.rebound_later)
            log.info(
                "event=rebound_later namespace=%s route=%s rebound=%d reason='a pod runs the new revision'",
                route.namespace, route.name, result.rebound_later,
            )  # fmt: skip
        return result


async def _asked(route: RouteRef, call: Awaitable[T]) -> T | None:
    """The API server's answer, or None (logged) if it cannot say: the index is all there is then,
    and reconciling must go on."""
    try:
        return await call
    except Exception as exc:
        log.warning("event=list_failed namespace=%s route=%s error=%r", route.namespace, route.name, str(exc))
        return None
