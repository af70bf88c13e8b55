"""What the admin commands do, against any Redis the operator uses (no Kubernetes needed).

Each function returns plain data for the CLI to print as a table or JSON, and raises a typed
error (``InvalidInput``, ``NotFound``, ``NoAvailablePod``, ``StoreUnavailable``) otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from stateful_route.controller.status import pod_state, rfc3339
from stateful_route.core import validation
from stateful_route.core.constants import DEFAULT_LINK_TTL
from stateful_route.core.errors import LayoutTooNew, StatefulRouteError
from stateful_route.core.state import PodPhase, RouteSnapshot, RoutingState
from stateful_route.gateway.client import ClientDriver
from stateful_route.pod.server import ServerDriver
from stateful_route.store import connection
from stateful_route.store.connection import AnyRedis
from stateful_route.store.eviction import evict as evict_pod
from stateful_route.store.links import LinkStore
from stateful_route.store.migration import Migration
from stateful_route.store.table import RouteTable

__all__ = ["Admin", "NotFound", "connect"]


class NotFound(StatefulRouteError):
    """The route, pod or link asked about does not exist."""


@contextlib.asynccontextmanager
async def connect(url: str, prefix: str, deadline: float) -> AsyncIterator[Admin]:
    """An Admin on a connection to ``url`` (closed on exit); every call waits ``deadline`` at most."""
    redis = connection.connect(url, socket_connect_timeout=deadline, socket_timeout=deadline)
    try:
        yield Admin(redis, prefix=prefix, timeout=deadline)
    finally:
        await redis.aclose()


def pod_rows(snapshot: RouteSnapshot, phases: Mapping[int, PodPhase] | None = None) -> list[dict[str, Any]]:
    """One row per pod of a route table, as the ``pods`` command prints it; ``state`` says
    Terminating (``terminating_until`` is its deadline) or Outdated where ``phases`` say so."""
    routable = snapshot.routable
    phases = phases or {}
    return [
        {
            "pod": index,
            "state": pod_state(pod, phases.get(index)),
            "ready": pod.ready,
            "terminating": pod.terminating,
            "terminating_until": _until(phases.get(index)),
            "outdated": index in phases and phases[index].outdated,
            "routing": pod.routing.label,
            "routable": index in routable,
            "available": index in snapshot.available,
            "links": snapshot.links.get(index, 0),
            "load": pod.load,
            "best": snapshot.best == index,
        }
        for index, pod in sorted(snapshot.pods.items())
    ]


def _until(phase: PodPhase | None) -> str | None:
    return None if phase is None or phase.terminating_until is None else rfc3339(phase.terminating_until)


class Admin:
    """Inspect and steer routes from a terminal."""

    def __init__(self, redis: AnyRedis, *, prefix: str, timeout: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.timeout = timeout
        self.table = RouteTable(redis, prefix=prefix, timeout=timeout)
        self.store = LinkStore(redis, self.table.keyring, timeout=timeout)

    async def snapshot(self, ns: str, service: str) -> RouteSnapshot:
        """The route table; NotFound if the route has no pods."""
        snapshot = await self.table.snapshot(ns, service)
        if not snapshot.pods:
            raise NotFound(f"no route table for {ns}/{service} under prefix {self.prefix!r}")
        return snapshot

    async def pods(self, ns: str, service: str) -> list[dict[str, Any]]:
        """The ``pods`` command's rows: the route table with what the operator says of each pod.
        Expired links are pruned first, so the counts are exact even right after a mass expiry."""
        await self.table.prune(ns, service)
        snapshot = await self.snapshot(ns, service)
        return pod_rows(snapshot, await self.table.phases(ns, service))

    async def _existing_pod(self, ns: str, service: str, pod: int) -> None:
        validation.pod_index(pod, "pod")
        if pod not in (await self.snapshot(ns, service)).pods:
            raise NotFound(f"pod {pod} is not in the route table of {ns}/{service}")

    async def lookup(self, ns: str, service: str, uid: str) -> dict[str, Any]:
        """The user's stored link (read only)."""
        link = await self.store.read(self.store.keyring.route(ns, service), validation.uid(uid))
        if link is None:
            raise NotFound(f"{uid!r} has no link in {ns}/{service}")
        return {"pod": link.pod, "persistent": link.persistent, "ttl_seconds": link.ttl}

    async def links(self, ns: str, uid: str) -> dict[str, int]:
        """Every service of ``ns`` in which the user has a link."""
        found = await self.store.links_of_user(validation.dns_label("namespace", ns), validation.uid(uid))
        if not found:
            raise NotFound(f"{uid!r} has no link in namespace {ns}")
        return found

    async def place(self, ns: str, service: str, uid: str) -> int:
        """What a gateway would answer: keep, place or move the user's link (writes it)."""
        await self.snapshot(ns, service)
        async with ClientDriver(self.redis, namespace=ns, prefix=self.prefix, timeout=self.timeout) as client:
            return await client.compute_linked_pod(ns, uid, service)

    async def set_routing(self, ns: str, service: str, pod: int, state: RoutingState) -> dict[str, Any]:
        """Report a routing state for the pod, as the pod itself would (drain / undrain)."""
        await self._existing_pod(ns, service, pod)
        server = ServerDriver(
            self.redis, namespace=ns, service=service, pod_index=pod, prefix=self.prefix, timeout=self.timeout
        )
        await server.set_routing_state(state)
        return next(row for row in pod_rows(await self.snapshot(ns, service)) if row["pod"] == pod)

    async def hand_off(
        self, ns: str, service: str, pod: int, *, within: float, pod_uid: str | None = None
    ) -> dict[str, Any]:
        """What a stopping pod does: report DenyNewCall, hand every user off to other pods (retrying
        for ``within`` seconds while none is available), report Shutdown; with ``pod_uid``, the
        reports are that pod instance's (see ServerDriver)."""
        server = ServerDriver(
            self.redis,
            namespace=ns,
            service=service,
            pod_index=pod,
            prefix=self.prefix,
            timeout=self.timeout,
            pod_uid=pod_uid,
        )
        await self._existing_pod(ns, service, pod)
        result = await server.hand_off_all(within=within)
        return {"pod": pod, "moved": result.moved, "left": result.left, "waiting": result.waiting}

    async def migrate(self, ns: str | None, service: str | None) -> list[dict[str, Any]]:
        """Bring one route (``service`` given), or every route of ``ns`` (or of the prefix), to this
        release's Redis layout; what each migration did. NotFound when there is no such route; of
        several routes, one written by a newer release is a row with an ``error``, the rest go on."""
        migrator = self.store.migrator
        if service is not None and ns is not None:
            self.store.keyring.route(ns, service)  # InvalidInput first
            await self.snapshot(ns, service)  # NotFound without a table
            routes = [(ns, service)]
        else:
            routes = await migrator.routes(None if ns is None else validation.dns_label("namespace", ns))
        done: list[dict[str, Any]] = []
        for n, s in routes:
            try:
                done.append((await migrator.migrate(n, s, full=True)).as_dict())
            except LayoutTooNew as exc:
                if service is not None:
                    raise
                # One route a newer release wrote must not hide what was migrated, nor stop the rest.
                done.append({**Migration(n, s, before=exc.found).as_dict(), "error": str(exc)})
        return done

    async def evict(self, ns: str, service: str, pod: int, *, rebind: bool) -> dict[str, Any]:
        """Remove every link to the pod (compare-and-delete) and optionally place the users again."""
        await self._existing_pod(ns, service, pod)
        route_keys = self.store.keyring.route(ns, service)
        done = await evict_pod(
            self.store,
            route_keys,
            pod,
            reason="evicted from the command line",
            rebind_ttl=DEFAULT_LINK_TTL if rebind else None,
        )
        return {"pod": done.pod, "removed": done.removed, "rebound": done.rebound, "at": done.at}
