"""Keeps one route's table equal to what Kubernetes shows, and evicts what stopped being routable.

Safe to run again and again (after a restart, on every pod event, on a timer): each run reads
the table, writes the planned one (a no-op when nothing changed) and evicts only pods that are
unroutable and still hold links, or that Kubernetes no longer has.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stateful_route.controller import planning
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.rollouts import StatefulSetRecord
from stateful_route.controller.spec import OnTermination, Rebind, RouteName, RouteRef
from stateful_route.core.state import PodPhase, RouteSnapshot, RoutingState
from stateful_route.store.connection import AnyRedis
from stateful_route.store.eviction import Eviction, evict
from stateful_route.store.links import LinkStore
from stateful_route.store.table import RouteTable

__all__ = ["Reconciler", "Removal", "Result"]


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconciliation found and did."""

    plan: planning.Plan
    snapshot: RouteSnapshot  # after evictions
    evictions: list[Eviction]
    wrote: bool = False  # whether the table changed
    rebound_later: int = 0  # users evicted earlier in a rolling update, placed now (see ``reconcile``)


@dataclass(frozen=True, slots=True)
class Removal:
    """What forgetting a route did: the pods its table had, and the links removed."""

    pods: list[int]
    links: int


class Reconciler:
    """Reconciles routes; one at a time per route (a lock each), any number of routes at once."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        prefix: str = "sr",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = RouteTable(redis, prefix=prefix, timeout=timeout)
        self.store = LinkStore(redis, self.table.keyring, timeout=timeout)
        self._clock = clock
        self._wall_clock = wall_clock
        self._phases: dict[RouteName, dict[int, PodPhase]] = {}
        self._deferred: dict[RouteName, tuple[float, list[str]]] = {}  # since, evicted users to place
        self._uids: dict[RouteName, dict[int, str]] = {}  # the pod last seen behind each index
        self._locks: collections.defaultdict[RouteName, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._not_ready_since: collections.defaultdict[RouteName, dict[str, float]] = collections.defaultdict(
            dict
        )
        self.last_eviction: dict[RouteName, Eviction] = {}

    async def configure(self, route: RouteRef) -> None:
        """Write the route's policy where placement reads it (every placement obeys its link TTL)."""
        await self.table.configure(
            route.namespace,
            route.spec.service,
            max_links_per_pod=route.spec.max_links_per_pod,
            link_ttl=route.spec.link_ttl,
        )

    async def reconcile(
        self, route: RouteRef, records: Iterable[PodRecord], stateful_set: StatefulSetRecord | None = None
    ) -> Result:
        """Make the table match ``records`` (the route's pods) and ``stateful_set`` (its rollout,
        if known), and evict what is unroutable."""
        name = route.key
        ns, service, spec = route.namespace, route.spec.service, route.spec
        async with self._locks[name]:
            before = await self.table.snapshot(ns, service)
            if not before.pods:  # a new route, or a Redis that came back empty: policy first
                await self.configure(route)
            blocked: frozenset[int] = frozenset()
            if stateful_set is not None:
                blocked = await self._blocked(route, before)
            plan = planning.plan(
                records,
                before.pods,
                grace=spec.grace,
                not_ready_since=self._not_ready_since[name],
                now=self._clock(),
                wall=self._wall_clock(),
                handoff=spec.on_termination is OnTermination.HANDOFF,
                stateful_set=stateful_set,
                blocked=blocked,
            )
            # A pod replaced by a new one with its ordinal before we saw it go: its users' state
            # went with it, and so do its own reports (a Shutdown must not stick to the new pod).
            seen = self._uids.get(name, {})
            replaced = {i for i, uid in plan.uids.items() if seen.get(i, uid) != uid and i in before.pods}
            self._uids[name] = plan.uids
            for index in replaced:
                await self.table.remove_pod(ns, service, index)
            # Gone pods stay in the table, unroutable, until their links are evicted: a crash
            # in between leaves them for the next run instead of orphaning their links.
            wrote = await self.table.put_pods(ns, service, plan.with_gone_fenced())
            fenced = await self.table.snapshot(ns, service)
            route_keys = self.table.keyring.route(ns, service)
            rebind_ttl = spec.link_ttl if spec.rebind is Rebind.EAGER else None
            # Early in a rolling update no pod runs the new revision yet: users rebound now would
            # land on pods about to be replaced and move again. They are placed when the first
            # new pod takes users (at their next lookup if sooner), or after the grace at worst.
            defer = rebind_ttl is not None and bool(stateful_set and stateful_set.rolling and plan.outdated)
            waiting = self._deferred.get(name, (self._clock(), []))
            later = defer and not plan.held_back
            evictions = []
            for index, pod in fenced.pods.items():
                if (
                    index in plan.gone
                    or index in replaced
                    or (not pod.routable and fenced.links.get(index, 0))
                ):
                    reason = planning.unroutable_reason(None if index in plan.gone else pod, spec.grace)
                    reason = "replaced" if index in replaced else reason
                    evictions.append(
                        await evict(
                            self.store, route_keys, index, reason=reason,
                            rebind_ttl=None if later else rebind_ttl, unlinked=waiting[1] if later else None,
                        )
                    )  # fmt: skip
            rebound_later = 0
            if waiting[1] and (plan.held_back or not defer or self._clock() - waiting[0] >= spec.grace):
                placed = await self.store.place_many(route_keys, waiting[1], spec.link_ttl)
                rebound_later = sum(p is not None for p in placed)
                self._deferred.pop(name, None)
            elif waiting[1]:
                self._deferred[name] = waiting
            if plan.gone:
                wrote = await self.table.put_pods(ns, service, plan.pods.values()) or wrote
            useful = [e for e in evictions if e.removed]
            if useful:
                self.last_eviction[name] = useful[-1]
            after = await self.table.snapshot(ns, service) if evictions else fenced
            if not before.pods or self._phases.get(name) != plan.phases:
                await self.table.put_phases(ns, service, plan.phases)
                self._phases[name] = plan.phases
            return Result(plan, after, useful, wrote, rebound_later)

    async def _blocked(self, route: RouteRef, before: RouteSnapshot) -> frozenset[int]:
        """Pods taking no new users whatever the table says: their own report, or the cap."""
        reports = await self.table.reports(route.namespace, route.spec.service)
        cap = route.spec.max_links_per_pod
        return frozenset(i for i, r in reports.items() if r is not RoutingState.READY) | frozenset(
            i for i, n in before.links.items() if cap and n >= cap
        )

    async def remove(self, route: RouteRef) -> Removal:
        """Forget a deleted route: its table, and its links unless the route keeps them."""
        name = route.key
        ns, service = route.namespace, route.spec.service
        async with self._locks[name]:
            pods = sorted((await self.table.snapshot(ns, service)).pods)
            # The table goes first (announced, so clients stop placing users here), then every
            # key under the route's prefix: links to pods no longer in the table included.
            await self.table.delete(ns, service)
            removed = await self.store.delete_route(
                self.table.keyring.route(ns, service), keep_links=route.spec.keep_links_on_delete
            )
        self._locks.pop(name, None)
        self._not_ready_since.pop(name, None)
        self._phases.pop(name, None)
        self._deferred.pop(name, None)
        self._uids.pop(name, None)
        self.last_eviction.pop(name, None)
        return Removal(pods, removed)
