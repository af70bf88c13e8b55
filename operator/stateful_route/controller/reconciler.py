"""Keeps one route's table equal to what Kubernetes shows, and evicts what stopped being routable.

Safe to run again and again (after a restart, on every pod event, on a timer): each run reads
the table, writes the planned one (a no-op when nothing changed) and evicts only pods that are
unroutable and still hold links, or that Kubernetes no longer has.

A route is reconciled only with the spec this reconciler last configured for it, and never
after its removal: a pod event or a timer still carrying an older spec, or a deleted route, is
skipped. The table itself names its owner (the route's uid), so a write that slips past is
refused by Redis instead of bringing back a table nobody maintains.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from cachetools import LRUCache

from stateful_route.controller import planning
from stateful_route.controller.migrations import MigrationReport
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.rollouts import StatefulSetRecord
from stateful_route.controller.spec import Listed, OnTermination, Rebind, RouteName, RouteRef, RouteSpec
from stateful_route.core.errors import NotOwner, StatefulRouteError
from stateful_route.core.state import PodPhase, PodState, RouteSnapshot, RoutingState
from stateful_route.store.connection import AnyRedis
from stateful_route.store.eviction import Eviction, evict
from stateful_route.store.links import LinkStore
from stateful_route.store.migration import Migration
from stateful_route.store.table import RouteTable

__all__ = ["Reconciler", "Removal", "Result"]

log = logging.getLogger("stateful_route.operator")


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
        wall_clock: Callable[[], float] = time.time,  # grace starts are kept in Redis, so Unix time
        on_leave: Callable[[str, str], None] | None = None,
        on_migration: Callable[[RouteRef, MigrationReport], None] | None = None,
    ) -> None:
        """``on_leave(namespace, service)`` is told of every service whose table this operator
        removed (a route deleted, or moved to another service or StatefulSet);
        ``on_migration(route, report)`` of each migration that has work to do, when it starts,
        ends and fails."""
        self.table = RouteTable(redis, prefix=prefix, timeout=timeout)
        self.store = LinkStore(redis, self.table.keyring, timeout=timeout)
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_leave = on_leave
        self._on_migration = on_migration
        self._phases: dict[RouteName, dict[int, PodPhase]] = {}
        self._deferred: dict[RouteName, tuple[float, list[str]]] = {}  # since, evicted users to place
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        # Per (namespace, service): removing a table and claiming it, which routes of different
        # uids (so under different locks above) may do at once when one replaces the other.
        self._service_locks: collections.defaultdict[tuple[str, str], asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._routes: dict[str, RouteRef] = {}  # by uid: the spec each route was configured with
        self._removed: LRUCache[str, bool] = LRUCache(100_000)  # uids of deleted routes
        self.last_eviction: dict[RouteName, Eviction] = {}
        self._migrated: set[tuple[str, str]] = set()  # services migrated by this process
        # each route's first migration in this process, not yet in its status (handlers write it)
        self.migrations: dict[RouteName, MigrationReport] = {}

    def current(self, uid: str) -> RouteRef | None:
        """The route as last configured here, or None (not yet, refused, or deleted)."""
        return self._routes.get(uid)

    async def configure(
        self, route: RouteRef, previous: RouteRef | None = None, *, claim: bool = True
    ) -> bool:
        """Make ``route`` the spec reconciled from now on: leave what an earlier spec (the one
        configured here, else ``previous``) used if its service or StatefulSet changed, then claim
        the service and write its policy (every placement obeys its cap and link TTL).
        ``claim=False`` (another route keeps the service) only leaves. False unless claimed, or
        for a deleted route."""
        if route.uid in self._removed:
            return False
        async with self._locks[route.uid]:
            known = self._routes.pop(route.uid, None) or previous
            if known is not None and _moved(known.spec, route.spec):
                await self._leave(known, keep_links=route.spec.keep_links_on_delete)
                self._phases.pop(route.key, None)
            for stray in await self._strays(route):
                await self._leave(stray, keep_links=route.spec.keep_links_on_delete)
            if claim:
                await self._claim(route)
                await self._migrate(route)
                self._routes[route.uid] = route
        return claim

    async def _migrate(self, route: RouteRef) -> None:
        """Bring the route's Redis data to this release's layout, once per process (an operator
        that starts migrates every route it owns before reconciling it); a route already of this
        layout costs two reads. Progress goes to the log; the start, end or failure of one with
        work to do to ``on_migration``, and the report to ``migrations`` (for the status)."""
        service = (route.namespace, route.spec.service)
        if service in self._migrated:
            return
        report = MigrationReport(self._wall_clock())

        def started(_: Migration) -> None:
            log.info("event=migration_started namespace=%s route=%s", route.namespace, route.name)
            self._announce(route, report)

        def progress(so_far: Migration, pod: int) -> None:
            log.info(
                "event=migration_progress namespace=%s route=%s pod=%d moved=%d stale=%d checked=%d",
                route.namespace, route.name, pod, sum(so_far.moved.values()), so_far.stale, so_far.checked,
            )  # fmt: skip

        try:
            done = await self.store.migrator.migrate(*service, progress=progress, started=started)
        except StatefulRouteError as exc:
            report.fail(str(exc), self._wall_clock())
            log.warning(
                "event=migration_failed namespace=%s route=%s error=%r", route.namespace, route.name, str(exc)
            )
            self._announce(route, report)
            self.migrations[route.key] = report
            raise
        report.finish(done, self._wall_clock())
        self._migrated.add(service)
        self.migrations[route.key] = report
        if report.ran:
            log.info("event=migrated namespace=%s route=%s %s", route.namespace, route.name, done.message)
            self._announce(route, report)

    def _announce(self, route: RouteRef, report: MigrationReport) -> None:
        if self._on_migration is not None:
            self._on_migration(route, report)

    async def reconcile(
        self,
        route: RouteRef,
        records: Iterable[PodRecord],
        stateful_set: StatefulSetRecord | None = None,
        *,
        confirm: Callable[[], Awaitable[list[PodRecord] | None]] | None = None,
        exists: Callable[[], Awaitable[bool | None]] | None = None,
    ) -> Result | None:
        """Make the table match ``records`` (the route's pods) and ``stateful_set`` (its rollout,
        if known), and evict what is unroutable; None when ``route`` is not the spec configured
        here (a stale one, or a refused or deleted route). When ``records`` would change the
        table, ``confirm()`` (if given) lists the pods afresh and the table follows that list
        instead (None: the list failed, ``records`` are used). A table no route owns is claimed
        again (Redis lost its data) unless ``exists()`` says the route is gone: it was deleted
        while this replica was paused, and is forgotten here (None: unknown, it is claimed)."""
        async with self._locks[route.uid]:
            if self._routes.get(route.uid) != route:
                return None
            try:
                return await self._reconcile(route, records, stateful_set, confirm, exists)
            except _Deleted:
                self._removed[route.uid] = True
                self._routes.pop(route.uid, None)
                return None

    async def _reconcile(
        self,
        route: RouteRef,
        records: Iterable[PodRecord],
        stateful_set: StatefulSetRecord | None,
        confirm: Callable[[], Awaitable[list[PodRecord] | None]] | None,
        exists: Callable[[], Awaitable[bool | None]] | None,
    ) -> Result:
        name = route.key
        ns, service, spec = route.namespace, route.spec.service, route.spec
        before = await self.table.snapshot(ns, service)
        blocked: frozenset[int] = frozenset()
        if stateful_set is not None:
            blocked = await self._blocked(route, before)
        instances = await self.table.instances(ns, service)

        def planned(
            pods: Iterable[PodRecord], fencing: frozenset[int] = frozenset()
        ) -> tuple[planning.Plan, set[int]]:
            made = planning.plan(
                pods,
                before.pods,
                instances,
                grace=spec.grace,
                now=self._wall_clock(),
                handoff=spec.on_termination is OnTermination.HANDOFF,
                stateful_set=stateful_set,
                blocked=blocked | fencing,
            )
            # A pod replaced by a new one with its ordinal before we saw it go (the uid
            # written with the table, so a restart does not forget it): its users' state went
            # with it, so its links are evicted, and so do its own reports (the table write
            # below drops the reports of an index whose uid changed: a Shutdown must not
            # stick to the new pod).
            seen = {i: instance.rpartition(",")[0] for i, instance in instances.items()}
            gone_uid = {i for i, uid in made.uids.items() if seen.get(i, uid) != uid and i in before.pods}
            return made, gone_uid

        pods = list(records)
        plan, replaced = planned(pods)
        # kopf's index may be stale (a replica paused by peering keeps what it last saw, and
        # resumes acting before its re-listing is through): a change to the table is made
        # only as a fresh list of the pods confirms it.
        if confirm is not None and _changes(plan, replaced, before, instances):
            fresh = await confirm()
            if fresh is not None:
                pods = fresh
                plan, replaced = planned(pods)
        # Gone pods stay in the table, unroutable, until their links are evicted: a crash
        # in between leaves them for the next run instead of orphaning their links.
        # So are indices whose pod was replaced by a new one before we saw it go: the table
        # shows the old one's users their pod gone before they are moved, and nobody is
        # placed on the new pod until the old one's links are evicted. The fenced table is
        # planned without the new pod, so outdated pods are held back only if another pod
        # takes new users meanwhile (never NoAvailablePod while a rollout is fenced).
        fenced_now = frozenset(replaced)
        fence = planned(pods, fenced_now)[0] if fenced_now else plan
        wrote = await self._put(route, fence.with_gone_fenced(fenced_now), plan, fence.held, exists)
        # A table write prunes only a bounded number of expired links' shards (so that no call
        # blocks Redis for long after a mass expiry): finish here, in short calls, so scores and
        # the counts below (status, metrics) are exact again every tick.
        pruned = await self.table.prune(ns, service)
        # Nothing written, nothing pruned, and the first read's counts exact: the table is as that
        # read showed (a second read could only add links placed meanwhile, which the next tick
        # reads), so a tick that changes nothing reads it once.
        unchanged = not wrote and not pruned.dropped and before.exact
        fenced = before if unchanged else await self.table.snapshot(ns, service)
        route_keys = self.table.keyring.route(ns, service)
        rebind_ttl = spec.link_ttl if spec.rebind is Rebind.EAGER else None
        # Early in a rolling update no pod runs the new revision yet: users rebound now would
        # land on pods about to be replaced and move again. They wait for the first new pod
        # to take users, at most rolloutWaitSeconds: the operator places them then, and their
        # own lookups meanwhile raise PodPending (the eviction marks them waiting).
        # (Pods still to replace, by their revision: a rollback mid-rollout is one too.)
        rolling = stateful_set is not None and any(stateful_set.replaces(r) for r in pods)
        # Under a fence the users are evicted into the fenced table, where the outdated pods may
        # take new users (the new pod is fenced off): they wait there too, until it is lifted.
        hold = spec.rollout_wait if rolling and not fence.held_back else 0
        defer = rebind_ttl is not None and rolling
        waiting = self._deferred.get(name, (self._clock(), []))
        # Users evicted under a fence are placed once it is lifted, not on the fenced table
        # (where outdated pods may take them only to move them again).
        later = (defer and not plan.held_back) or bool(fenced_now and rebind_ttl is not None)
        evictions = []
        for index, pod in fenced.pods.items():
            if index in plan.gone or index in replaced or (not pod.routable and fenced.links.get(index, 0)):
                reason = planning.unroutable_reason(None if index in plan.gone else pod, spec.grace)
                reason = "replaced" if index in replaced else reason
                evictions.append(
                    await evict(
                        self.store, route_keys, index, reason=reason,
                        rebind_ttl=None if later else rebind_ttl, unlinked=waiting[1] if later else None,
                        hold=hold,
                    )
                )  # fmt: skip
        if plan.gone or fenced_now:
            wrote = await self._put(route, plan.pods.values(), plan, plan.held, exists) or wrote
        rebound_later = 0
        waited = self._clock() - waiting[0]
        if waiting[1] and (plan.held_back or not defer or waited >= spec.rollout_wait):
            placed = await self.store.place_many(route_keys, waiting[1], spec.link_ttl)
            rebound_later = sum(p is not None for p in placed)
            self._deferred.pop(name, None)
        elif waiting[1]:
            self._deferred[name] = waiting
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
        """Forget a deleted route: its table, and its links unless the route keeps them. Nothing
        is removed from a table another route owns (a refused duplicate)."""
        self._removed[route.uid] = True
        async with self._locks[route.uid]:
            self._routes.pop(route.uid, None)
            removal = await self._leave(route, keep_links=route.spec.keep_links_on_delete)
            # An earlier spec's table (remembered here or not) is found by its owner.
            for stray in await self._strays(route):
                more = await self._leave(stray, keep_links=route.spec.keep_links_on_delete)
                removal = Removal(removal.pods + more.pods, removal.links + more.links)
        self._locks.pop(route.uid, None)
        self._phases.pop(route.key, None)
        self._deferred.pop(route.key, None)
        self.last_eviction.pop(route.key, None)
        return removal

    async def disown(self, namespace: str, uid: str, services: Iterable[str] | None = None) -> Removal:
        """Forget a route that no longer exists, whatever its spec said (or if it was invalid): every
        table of ``namespace`` it still owns (of ``services`` only, if given) is removed, with its
        links unless the table records that the route kept them. Nothing it does not own is
        touched, and nothing is written for it afterwards (as after ``remove``)."""
        self._removed[uid] = True
        removal = Removal([], 0)
        async with self._locks[uid]:
            known = self._routes.pop(uid, None)
            owned = await self.owners(namespace)
            for service in sorted(owned):
                if owned[service] != uid or (services is not None and service not in services):
                    continue
                keep = await self.table.keeps_links(namespace, service)
                more = await self._drop(namespace, service, uid, keep_links=keep)
                removal = Removal(removal.pods + more.pods, removal.links + more.links)
        self._locks.pop(uid, None)
        if known is not None:
            self._phases.pop(known.key, None)
            self._deferred.pop(known.key, None)
            self.last_eviction.pop(known.key, None)
        return removal

    async def sweep(self, namespace: str, listed: Callable[[], Awaitable[Listed | None]]) -> list[str]:
        """Remove the orphaned tables of ``namespace``: those whose owner ``listed()`` (the routes
        as the API server lists them; None: unknown, nothing is removed) does not have, unless a
        listed route names the service (the one that keeps it claims the table at its next tick,
        and evicts the users of pods that are not its own). Returns the services removed.

        A route deleted without its deletion handler (before kopf's finalizer was on it, or with
        the finalizer removed by hand) leaves its table to nobody: gateways would keep answering
        from it. The owners are read before the list is asked for, so an owner missing from it
        was deleted (uids never come back), never one created meanwhile; the removal is fenced
        by that owner, so a route claiming the table meanwhile keeps it. A service listed in the
        namespace's set with neither a table nor links leaves the set."""
        members = await self.table.services(namespace)
        owned = await self.owners(namespace, members)
        for service in members:
            if service not in owned:  # listed with no table: only kept links keep it there
                await self.table.forget_if_unused(namespace, service)
        if not owned:
            return []
        routes = await listed()
        if routes is None:
            return []
        orphaned = {s: o for s, o in owned.items() if o not in routes.uids and s not in routes.services}
        for owner in sorted(set(orphaned.values())):
            await self.disown(namespace, owner, [s for s, o in orphaned.items() if o == owner])
        return sorted(orphaned)

    async def owners(self, namespace: str, services: Iterable[str] | None = None) -> dict[str, str]:
        """The owner (a StatefulRoute's uid) of every table of ``namespace`` (of ``services``, if
        given), by service."""
        if services is None:
            services = await self.table.services(namespace)
        found = {s: await self.table.owner(namespace, s) for s in services}
        return {service: owner for service, owner in found.items() if owner is not None}

    async def _strays(self, route: RouteRef) -> list[RouteRef]:
        """The route as it was when it claimed another service whose table it still owns: a spec
        this operator never saw (it restarted, and the route's first event was already the move,
        or a refusal), which only the table's owner field still tells."""
        ns = route.namespace
        return [
            dataclasses.replace(route, spec=dataclasses.replace(route.spec, service=service))
            for service in await self.table.services(ns)
            if service != route.spec.service and await self.table.owner(ns, service) == route.uid
        ]

    async def _claim(self, route: RouteRef) -> None:
        # Never inside another route's removal of this service's table: its sweep of the
        # service's keys and its leaving the namespace's set would take this claim with them.
        async with self._service_locks[route.namespace, route.spec.service]:
            await self.table.configure(
                route.namespace,
                route.spec.service,
                max_links_per_pod=route.spec.max_links_per_pod,
                link_ttl=route.spec.link_ttl,
                owner=route.uid,
                rollout_wait=route.spec.rollout_wait,
                keep_links=route.spec.keep_links_on_delete,
            )

    async def _put(
        self,
        route: RouteRef,
        pods: Iterable[PodState],
        plan: planning.Plan,
        held: frozenset[int],
        exists: Callable[[], Awaitable[bool | None]] | None = None,
    ) -> bool:
        ns, service = route.namespace, route.spec.service
        try:
            return await self.table.put_pods(
                ns, service, pods, owner=route.uid, instances=plan.instances, held=held
            )
        except NotOwner as exc:
            if exc.claimed:
                # Another route took the service meanwhile: this one is not reconciled until its
                # handlers decide again which route keeps the service (at its next tick).
                self._routes.pop(route.uid, None)
                raise
        # No route owns the table: Redis lost its data, or the route was deleted while this
        # replica was paused (its index still holds the route): the API server tells which.
        if exists is not None and await exists() is False:
            raise _Deleted
        await self._claim(route)
        return await self.table.put_pods(
            ns, service, pods, owner=route.uid, instances=plan.instances, held=held
        )

    async def _leave(self, route: RouteRef, *, keep_links: bool) -> Removal:
        """Remove the route's table and every key under its prefix (links too unless kept), if
        the route owns it."""
        ns, service = route.namespace, route.spec.service
        owner = await self.table.owner(ns, service)
        if owner is not None and owner != route.uid:
            return Removal([], 0)
        return await self._drop(ns, service, owner, keep_links=keep_links)

    async def _drop(self, ns: str, service: str, owner: str | None, *, keep_links: bool) -> Removal:
        """Remove a table and every key under its prefix (links too unless kept) if ``owner``
        still holds it (None: nobody does)."""
        # Whole, or a route claiming the service between the table's deletion and the sweep
        # below would lose its new policy to the sweep and its service to the set (see _claim).
        async with self._service_locks[ns, service]:
            pods = sorted((await self.table.snapshot(ns, service)).pods)
            # The table goes first (announced, so clients stop placing users here), then every key
            # under the route's prefix: links to pods no longer in the table included.
            with contextlib.suppress(NotOwner):  # claimed by another route meanwhile: its table now
                await self.table.delete(ns, service, owner=owner, keep_service=keep_links)
                removed = await self.store.delete_route(
                    self.table.keyring.route(ns, service), keep_links=keep_links
                )
                if self._on_leave is not None:
                    self._on_leave(ns, service)
                return Removal(pods, removed)
        return Removal([], 0)


class _Deleted(Exception):
    """The route no longer exists: nothing more is written for it."""


def _changes(
    plan: planning.Plan, replaced: set[int], before: RouteSnapshot, instances: Mapping[int, str]
) -> bool:
    """Whether ``plan`` changes the table: a pod added, gone, replaced or otherwise written."""
    if plan.gone or replaced or plan.instances != dict(instances) or plan.pods.keys() != before.pods.keys():
        return True
    return any(
        (pod.ready, pod.terminating, pod.routing) != (old.ready, old.terminating, old.routing)
        for pod, old in ((pod, before.pods[i]) for i, pod in plan.pods.items())
    )


def _moved(before: RouteSpec, after: RouteSpec) -> bool:
    """Whether a spec change leaves the old table behind: another service, or another
    StatefulSet (its pods are other pods, even at the same indices)."""
    return before.service != after.service or before.stateful_set != after.stateful_set
