"""ClientDriver: what a gateway embeds to answer "which pod does this user use?"."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self

from stateful_route.core import validation
from stateful_route.core.constants import DEFAULT_LINK_TTL
from stateful_route.core.errors import InvalidInput, NoAvailablePod, PodPending
from stateful_route.gateway.cache import CacheKey, LinkCache
from stateful_route.gateway.metrics import ClientMetrics
from stateful_route.gateway.mirror import RouteMirror, RouteView
from stateful_route.store import changes, keys
from stateful_route.store.connection import AnyRedis
from stateful_route.store.links import LinkStore
from stateful_route.store.table import RouteTable

__all__ = ["ROUTE_IDLE", "ClientDriver"]

# Seconds a route's view is kept after the last lookup or view call about it (or the cache's TTL,
# if longer): meanwhile it is re-read every refresh_interval.
ROUTE_IDLE = 60.0


class ClientDriver:
    """Sticky, load-aware lookups of users' pods, with a local cache and a route mirror.

    Use as ``async with ClientDriver(redis, namespace="games") as client: ...``.
    ``namespace`` is the namespace (or namespaces) this client serves: its change channels are
    followed, and any other namespace is refused with InvalidInput (an allow-list).

    A lookup reads the local cache, then Redis. ``compute_linked_pod`` answers from the cache
    only while the mirrored route view says the cached pod is routable; otherwise one Lua call
    keeps, places or moves the link atomically. The mirror is never older than ``max_age``.
    It follows at most ``max_routes`` routes, each while its table exists and for
    ``max(cache_ttl, ROUTE_IDLE)`` seconds after it was last asked about (a cache miss or a
    route-view call).
    """

    def __init__(
        self,
        redis: AnyRedis,
        *,
        namespace: str | Iterable[str],
        link_ttl: float = DEFAULT_LINK_TTL,
        cache_ttl: float | None = None,
        cache_size: int = 100_000,
        prefix: str = "sr",
        timeout: float = 1.0,
        refresh_interval: float = 0.5,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: ClientMetrics | None = None,
        max_routes: int = 10_000,
    ) -> None:
        names = [namespace] if isinstance(namespace, str) else list(namespace)
        if not names:
            raise InvalidInput("namespace", "name at least one namespace")
        self.namespaces = frozenset(validation.dns_label("namespace", ns) for ns in names)
        self.link_ttl = validation.seconds("link_ttl", link_ttl, minimum=1)
        if cache_ttl is None:
            # The cache must forget a link before Redis does; a minute earlier by default.
            cache_ttl = self.link_ttl - 60 if self.link_ttl > 120 else self.link_ttl / 2
        self.cache_ttl = validation.seconds("cache_ttl", cache_ttl, minimum=0.001)
        if self.cache_ttl > self.link_ttl:
            raise InvalidInput("cache_ttl", f"must not exceed link_ttl ({self.link_ttl}), got {cache_ttl}")
        validation.integer("cache_size", cache_size, minimum=1)
        validation.integer("max_routes", max_routes, minimum=1)
        interval = validation.seconds("refresh_interval", refresh_interval, minimum=0.01)
        max_age = validation.seconds("max_age", max_age, minimum=0.02)
        if interval >= max_age:
            raise InvalidInput("refresh_interval", f"must be shorter than max_age ({max_age})")

        self._table = RouteTable(redis, prefix=prefix, timeout=timeout, routes=max_routes)
        self._keyring = self._table.keyring
        self._store = LinkStore(
            redis, self._keyring, timeout=timeout, observe=None if metrics is None else metrics.redis_call
        )
        self._clock = clock
        self.cache = LinkCache(size=cache_size, ttl=self.cache_ttl, clock=clock)
        self._entries = self.cache.entries  # the hit path reads these directly
        self._mirror = RouteMirror(
            redis,
            self._table,
            namespaces=self.namespaces,
            clock=clock,
            refresh_interval=interval,
            max_age=max_age,
            # A route is followed while asked about within this; at least the cache's TTL, so a
            # route forgotten for idleness has no live cached link left.
            keep=max(self.cache_ttl, ROUTE_IDLE),
            max_routes=max_routes,
            on_change=self._apply_change,
            on_lost=self._forget_pods,
            on_gap=self._forget_all,
            metrics=metrics,
        )
        self._views = self._mirror.views
        # Bumped by every invalidation; a Redis answer that raced one is not cached.
        self._epoch = 0
        self._misses = 0
        if metrics is not None:  # without metrics the lookup path has no hook at all
            self.compute_linked_pod = self._counted(metrics)  # type: ignore[method-assign,assignment]

    async def __aenter__(self) -> Self:
        await self._mirror.start()
        # Start answering once the change channel is followed (or after ``timeout`` if Redis is
        # down: calls then raise StoreUnavailable until it is back).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._mirror.connected.wait(), self._store.timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._mirror.stop()

    @property
    def subscribed(self) -> asyncio.Event:
        """Set while the client follows its change channels; cleared during a gap."""
        return self._mirror.connected

    # -- links -------------------------------------------------------------------------

    async def compute_linked_pod(self, ns: str, uid: str, service: str) -> int:
        """The pod this user must use now: the cached link while its pod is routable, else the
        stored link if routable, else a place on the best available pod (stored atomically).

        Raises NoAvailablePod when the user has no routable link and no pod is available, and its
        subclass PodPending (retry soon) while a user evicted early in a rolling update waits for
        a pod of the new revision (at most the route's ``rolloutWaitSeconds``).
        """
        key = (ns, service, uid)
        try:
            pod, deadline = self._entries[key]
            view = self._views[ns][service]
        except (KeyError, TypeError):  # a miss, or an argument that validation will name
            pass
        else:
            now = self._clock()
            if deadline > now and view.valid_until > now and pod in view.routable:
                return pod
        return await self._compute(ns, uid, service, key)

    def _counted(self, metrics: ClientMetrics) -> Callable[[str, str, str], Coroutine[Any, Any, int]]:
        plain = self.compute_linked_pod

        async def compute_linked_pod(ns: str, uid: str, service: str) -> int:
            misses = self._misses
            try:
                return await plain(ns, uid, service)
            finally:
                # A hit never awaits, so no other task can have missed meanwhile.
                if self._misses == misses:
                    metrics.cache_hit()
                else:
                    metrics.cache_miss()

        return compute_linked_pod

    async def _compute(self, ns: str, uid: str, service: str, key: CacheKey) -> int:
        self._misses += 1
        route_keys = self._route(ns, service)
        validation.uid(uid)
        epoch, sent = self._epoch, self._clock()  # before the request: see _cache_put
        await self._mirror.view(ns, service, whole=False)
        try:
            placed = await self._store.place(route_keys, uid, self.link_ttl)
        except PodPending:
            self.cache.drop(key)
            raise
        if placed is None:
            self.cache.drop(key)
            raise NoAvailablePod(ns, service)
        if placed.outcome != "kept":
            await self._store.services.add(route_keys)
        self._cache_put(epoch, sent, key, placed.pod, placed.ttl)
        return placed.pod

    async def get_linked_pod(self, ns: str, uid: str, service: str) -> int | None:
        """The user's link (local cache, then Redis), or None. The cache answers only while the
        route view is fresh and says the cached pod is routable."""
        pod = self._cached_routable(ns, uid, service)
        if pod is not None:
            return pod
        return await self.get_linked_pod_not_cache(ns, uid, service)

    async def get_linked_pod_in_cache_or_if_persist(self, ns: str, uid: str, service: str) -> int | None:
        """The cached link (as ``get_linked_pod``), else the stored link only if it is persistent,
        else None."""
        pod = self._cached_routable(ns, uid, service)
        if pod is not None:
            return pod
        epoch, sent = self._epoch, self._clock()  # before the request: see _cache_put
        await self._mirror.view(ns, service, whole=False)
        link = await self._store.read(self._route(ns, service), uid)
        if link is None or not link.persistent:
            return None
        self._cache_put(epoch, sent, (ns, service, uid), link.pod, link.ttl)
        return link.pod

    async def get_linked_pod_not_cache(self, ns: str, uid: str, service: str) -> int | None:
        """The stored link, read from Redis (the cache is refreshed with it), or None."""
        route_keys = self._route(ns, service)
        validation.uid(uid)
        epoch, sent = self._epoch, self._clock()  # before the request: see _cache_put
        await self._mirror.view(ns, service, whole=False)
        link = await self._store.read(route_keys, uid)
        key = (ns, service, uid)
        if link is None:
            self.cache.drop(key)
            return None
        self._cache_put(epoch, sent, key, link.pod, link.ttl)
        return link.pod

    async def get_link_service(self, ns: str, uid: str) -> dict[str, int]:
        """Every service of ``ns`` this user is linked to: ``{service: pod}``."""
        self._namespace(ns)
        return await self._store.links_of_user(ns, validation.uid(uid))

    async def batch_get_linked_pod(self, ns: str, uids: Iterable[str], service: str) -> dict[int, list[str]]:
        """Links of many users grouped ``{pod: [uid, ...]}`` (unlinked users are absent).

        Costs one round trip however many users (MGET of 1,000 keys each, pipelined); any
        Redis fault raises rather than dropping users.
        """
        route_keys = self._route(ns, service)
        if isinstance(uids, str) or not isinstance(uids, Iterable):
            raise InvalidInput("uids", f"must be an iterable of uids, not {type(uids).__name__}")
        wanted = [validation.uid(uid) for uid in uids]
        grouped: dict[int, list[str]] = {}
        for uid, pod in zip(wanted, await self._store.read_many(route_keys, wanted), strict=True):
            if pod is not None:
                grouped.setdefault(pod, []).append(uid)
        return grouped

    async def set_linked_pod_if_absent(self, ns: str, uid: str, service: str, pod: int) -> int:
        """Store a temporary link to ``pod`` only if the user has none; the pod linked after the call.
        A link to a pod no longer routable counts as none (it is moved to ``pod``).

        Raises NoAvailablePod, writing nothing, when the route has no table (deleted, or not
        written yet) or ``pod`` is not a routable pod of it (``error.pod`` names it)."""
        route_keys = self._route(ns, service)
        validation.uid(uid)
        validation.pod_index(pod)
        epoch, sent = self._epoch, self._clock()  # before the request: see _cache_put
        await self._mirror.view(ns, service, whole=False)
        link = await self._store.link_if_absent(route_keys, uid, pod, self.link_ttl)
        await self._store.services.add(route_keys)
        self._cache_put(epoch, sent, (ns, service, uid), link.pod, link.ttl)
        return link.pod

    # -- the local cache alone -------------------------------------------------------------

    def get_linked_in_cache(self, ns: str, uid: str, service: str) -> int | None:
        """The cached link, or None (no I/O)."""
        return self._cached(ns, uid, service)

    def set_cache(self, ns: str, uid: str, service: str, pod: int) -> None:
        """Cache a link for ``cache_ttl`` seconds (no I/O)."""
        self._route(ns, service)
        self.cache.put((ns, service, validation.uid(uid)), validation.pod_index(pod))

    def cache_expired(self, ns: str, uid: str, service: str) -> None:
        """Forget the cached link of a user (no I/O)."""
        self._route(ns, service)
        self.cache.drop((ns, service, validation.uid(uid)))

    # -- the route view --------------------------------------------------------------------

    async def route_view(self, ns: str, service: str) -> RouteView:
        """The mirrored view of a route (read now if missing or older than ``max_age``)."""
        self._route(ns, service)
        return await self._mirror.view(ns, service)

    async def is_pod_routable(self, ns: str, service: str, index: int) -> bool:
        """Whether existing users may keep using pod ``index``."""
        validation.pod_index(index, "index")
        return index in (await self._routability(ns, service)).routable

    async def is_pod_available(self, ns: str, service: str, index: int) -> bool:
        """Whether new users may be placed on pod ``index``."""
        validation.pod_index(index, "index")
        return index in (await self.route_view(ns, service)).snapshot.available

    async def routable_pods(self, ns: str, service: str) -> list[int]:
        """Indices of the routable pods, ascending."""
        return sorted((await self._routability(ns, service)).routable)

    async def alive_pods(self, ns: str, service: str) -> list[int]:
        """Indices of the pods that are up (ready, not terminating), whatever their routing state."""
        pods = (await self.route_view(ns, service)).snapshot.pods
        return sorted(i for i, pod in pods.items() if pod.alive)

    async def best_pod(self, ns: str, service: str) -> int | None:
        """The pod a new user would be placed on now, or None."""
        return (await self.route_view(ns, service)).snapshot.best

    # -- internals -------------------------------------------------------------------------

    async def _routability(self, ns: str, service: str) -> RouteView:
        """A view whose routability is fresh (its other fields may be a moment older)."""
        self._route(ns, service)
        return await self._mirror.view(ns, service, whole=False)

    def _namespace(self, ns: Any) -> str:
        validation.dns_label("namespace", ns)
        if ns not in self.namespaces:
            raise InvalidInput(
                "namespace", f"{ns!r} is not served by this client ({sorted(self.namespaces)})"
            )
        return str(ns)

    def _route(self, ns: str, service: str) -> keys.RouteKeys:
        self._namespace(ns)
        return self._keyring.route(ns, service)

    def _cached(self, ns: str, uid: str, service: str) -> int | None:
        try:
            pod = self.cache.get((ns, service, uid))
        except TypeError:
            pod = None
        if pod is not None:
            return pod
        # Only a miss pays for validation: a hit proves the arguments were valid when cached.
        self._route(ns, service)
        validation.uid(uid)
        return None

    def _cached_routable(self, ns: str, uid: str, service: str) -> int | None:
        """The cached link while the route view is fresh and says its pod is routable."""
        try:
            pod, deadline = self._entries[(ns, service, uid)]
            view = self._views[ns][service]
        except (KeyError, TypeError):
            pass
        else:
            now = self._clock()
            if deadline > now and view.valid_until > now and pod in view.routable:
                return pod
        self._route(ns, service)
        validation.uid(uid)
        return None

    def _cache_put(self, epoch: int, sent: float, key: CacheKey, pod: int, remaining: float | None) -> None:
        """Cache a link read from Redis (for at most ``remaining``, what the stored link has left,
        counted from ``sent``, the clock before the request: the link's TTL was read at some
        moment after that, so the entry never outlives it, however long the reply took), only if
        no invalidation arrived meanwhile (it may concern this very link) and the fresh route view
        says its pod is routable: a link to a pod being evicted is not worth keeping."""
        view = self._views[key[0]].get(key[1])
        if (
            epoch == self._epoch
            and view is not None
            and view.valid_until > self._clock()
            and pod in view.routable
        ):
            self.cache.put(key, pod, remaining, since=sent)
        else:
            self.cache.drop(key)

    def _apply_change(self, ns: str, change: changes.Change) -> None:
        if change.kind is changes.ChangeKind.UNLINKED:
            self._epoch += 1
            self.cache.drop((ns, change.service, change.subject))
        elif change.kind is changes.ChangeKind.EVICTED and change.subject.isdigit():
            self._forget_pods(ns, change.service, frozenset([int(change.subject)]))

    def _forget_pods(self, ns: str, service: str, pods: frozenset[int]) -> None:
        # Links cached to a pod that stopped being routable may have moved since.
        self._epoch += 1
        self.cache.drop_pods(ns, service, pods)

    def _forget_all(self) -> None:
        self._epoch += 1
        self.cache.clear()
        # A gap may be a Redis restarted empty: register services again at the next placement.
        self._store.services.forget()
