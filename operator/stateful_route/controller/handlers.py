"""The kopf wiring: each handler is a line or two over the context and plain functions.

Only this module, ``runner`` (which starts kopf), ``login`` (which hands kopf credentials) and
``diffbase`` (a cheaper build of kopf's last-handled configuration) import kopf. Pods are only
*watched* (``@kopf.index`` + ``@kopf.on.event``): no finalizers, no annotations, nothing written
to them. State-tracking handlers are used for our own
StatefulRoutes only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import kopf

from stateful_route.controller import diffbase, login, pods, rollouts, status
from stateful_route.controller.config import OperatorConfig
from stateful_route.controller.context import OperatorContext
from stateful_route.controller.migrations import MigrationReport
from stateful_route.controller.reconciler import Reconciler, Result
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.core.constants import GROUP, KIND, PLURAL, STS_POD_NAME_LABEL, VERSION
from stateful_route.core.errors import InvalidInput, StatefulRouteError

__all__ = ["ROUTINE", "register"]

log = logging.getLogger("stateful_route.operator")

ROUTES = (GROUP, VERSION, PLURAL)
STATEFUL_SETS = ("apps", "v1", "statefulsets")
ROUTE_PODS = {STS_POD_NAME_LABEL: kopf.PRESENT}
# kopf puts it on every route before running its change handlers; only with it on is the
# route's deletion handler sure to run, so nothing is claimed for a route before.
FINALIZER = f"{GROUP}/cleanup"
# Handlers run on every pod or StatefulSet event, or every second per route, as kopf names them:
# their success is logged at DEBUG (handler_logs); the others' (a route created, changed,
# deleted) stays at INFO.
ROUTINE = (
    "Handler 'pod_changed'",
    "Handler 'stateful_set_changed'",
    "Handler 'route_gone'",
    "Timer 'route_tick'",
)


def _route(namespace: str, name: str, uid: str, spec: Any) -> RouteRef:
    try:
        return RouteRef(namespace, name, uid, RouteSpec.parse(name, spec))
    except InvalidInput as exc:
        raise kopf.PermanentError(f"invalid StatefulRoute spec: {exc}") from exc


def _previous(namespace: str, name: str, uid: str, old: Any) -> RouteRef | None:
    """The route as its spec read before an update, if that spec was valid."""
    try:
        return RouteRef(namespace, name, uid, RouteSpec.parse(name, old)) if old else None
    except InvalidInput:
        return None


async def _rival(ctx: OperatorContext, claims: kopf.Index[Any, Any], route: RouteRef) -> str | None:
    """The name of the StatefulRoute that keeps this route's service, if another does. Of the
    routes naming one service in one namespace, the one owning its table keeps it; if none of
    them does (none handled yet), the first created (then by name)."""
    found = sorted(list(claims.get((route.namespace, route.spec.service), [])))
    if all(uid == route.uid for _, _, uid in found):
        return None
    owner = await (await ctx.open()).table.owner(route.namespace, route.spec.service)
    keeper = next((c for c in found if c[2] == owner), found[0])
    return None if keeper[2] == route.uid else str(keeper[1])


async def _refuse(ctx: OperatorContext, route: RouteRef, rival: str, patch: kopf.Patch) -> None:
    """Leave what the route held, warn once, and say so in its status."""
    await (await ctx.open()).configure(route, claim=False)
    message = (
        f"service {route.spec.service!r} is routed by StatefulRoute {rival!r}; "
        "this route is ignored while that one exists"
    )
    if ctx.warnings.first(route.uid, message):
        log.warning(
            "event=service_conflict namespace=%s route=%s rival=%s", route.namespace, route.name, rival
        )
        kopf.warn(kopf.Body(route.body), reason="ServiceConflict", message=message)
    built = status.build_refused(route, message)
    if ctx.status.due(route, built):
        patch.status.update(built)


def _indexed(route_pods: kopf.Index[Any, Any], route: RouteRef) -> list[pods.PodRecord]:
    return list(route_pods.get((route.namespace, route.spec.stateful_set), []))


def _records(route_pods: kopf.Index[Any, Any], route: RouteRef, ctx: OperatorContext) -> list[pods.PodRecord]:
    return ctx.census.present(_indexed(route_pods, route))


def _stateful_set(
    stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord], route: RouteRef
) -> rollouts.StatefulSetRecord | None:
    found = list(stateful_sets.get((route.namespace, route.spec.stateful_set), []))
    return found[0] if found else None


@contextlib.contextmanager
def _retried(ctx: OperatorContext, route: RouteRef, handler: str) -> Iterator[None]:
    """Count a store fault (``ctx.counted``) and have kopf retry the handler a second later."""
    try:
        with ctx.counted(route, handler):
            yield
    except StatefulRouteError as exc:
        raise kopf.TemporaryError(f"reconciling {route.namespace}/{route.name}: {exc}", delay=1) from exc


async def _reconcile(
    ctx: OperatorContext,
    route: RouteRef,
    records: Iterable[pods.PodRecord],
    stateful_set: rollouts.StatefulSetRecord | None,
    handler: str,
) -> Result | None:
    try:
        result = await ctx.reconcile(route, records, stateful_set, handler)
    except StatefulRouteError as exc:  # already counted and logged
        raise kopf.TemporaryError(f"reconciling {route.namespace}/{route.name}: {exc}", delay=1) from exc
    if result is None:  # a stale spec, a refused or a deleted route: nothing done
        return None
    for eviction in result.evictions:
        kopf.info(kopf.Body(route.body), reason="Evicted", message=eviction.message)
    return result


def announce_migration(route: RouteRef, report: MigrationReport) -> None:
    """A Kubernetes event on the route as its migration starts, ends or fails (Reconciler._migrate)."""
    reason, message = report.event()
    post = kopf.warn if report.state == "Failed" else kopf.info
    post(kopf.Body(route.body), reason=reason, message=message)


def _report_migration(reconciler: Reconciler, route: RouteRef, patch: kopf.Patch) -> None:
    """The route's layout, and its migration if there was one, into its status."""
    report = reconciler.migrations.pop(route.key, None)
    if report is None:
        return
    if report.layout is not None:
        patch.status["layout"] = report.layout
    if report.ran:
        patch.status["migration"] = report.status()


async def _reconcile_routes_of(
    ctx: OperatorContext,
    stateful_set_key: tuple[str, str],
    routes: kopf.Index[Any, RouteRef],
    route_pods: kopf.Index[Any, pods.PodRecord],
    stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
    handler: str,
) -> bool:
    """Reconcile every route over one StatefulSet (namespace, name), each with the pods and the
    StatefulSet as indexed when its turn comes (see ``Coalescer``); False if a reconciliation
    already waiting took one route's over."""
    ran = True
    # A copy: the live index changes while we await, and iterating it then would skip routes.
    for route in list(routes.get(stateful_set_key, [])):

        async def work(route: RouteRef = route) -> None:
            records = _records(route_pods, route, ctx)
            await _reconcile(ctx, route, records, _stateful_set(stateful_sets, route), handler)

        ran = await ctx.coalescer.run(route.uid, work) and ran
    return ran


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Attach every handler to ``registry``."""

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = diffbase.LeanDiffBaseStorage(
            prefix=GROUP,
            key="last-handled-configuration",
            kinds=(KIND,),  # watched kinds need none
        )
        settings.posting.level = 20  # INFO: evictions are posted as events
        # A tick under way when its route is deleted, or the operator stops, finishes first
        # (a reconcile takes milliseconds) instead of being orphaned, still writing.
        settings.background.instant_exit_timeout = 0.5
        # Resources and namespaces are discovered once at start: no cluster-wide watch of
        # namespaces and CRDs, which keeps the RBAC small (the CRD is installed with us).
        settings.scanning.disabled = True
        settings.peering.lifetime = config.peering_lifetime
        await memo.ctx.census.prepare()
        await memo.ctx.open()
        # Routes deleted while no operator ran, without their deletion handler (kopf's finalizer
        # not yet on them, or removed by hand), left tables nobody would ever update.
        await memo.ctx.sweep_all()

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        await memo.ctx.close()

    @kopf.on.login(id="login", registry=registry)
    def log_in(**_: Any) -> kopf.ConnectionInfo:
        return login.connection_info(config.kubeconfig)

    @kopf.on.probe(id="redis", registry=registry)
    async def redis_ping(memo: kopf.Memo, **_: Any) -> bool:
        return bool(await (await memo.ctx.open()).table.ping())

    @kopf.index("pods", labels=ROUTE_PODS, id="route_pods", registry=registry)
    def route_pods(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, pods.PodRecord]:
        rec, sts = pods.record(body), pods.owner(body)
        return {} if rec is None or sts is None else {(namespace, sts): rec}

    @kopf.index(*STATEFUL_SETS, id="stateful_sets", registry=registry)
    def stateful_sets(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): rollouts.record(body)}

    @kopf.index(*ROUTES, id="routes", registry=registry)
    def routes(
        namespace: str, name: str, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
    ) -> dict[Any, RouteRef]:
        try:
            route = RouteRef(namespace, name, uid, RouteSpec.parse(name, spec))
        except InvalidInput:
            return {}  # reported by the route's own handlers
        if meta.get("deletionTimestamp"):
            return {}  # being deleted: pod events must not reconcile it any more
        return {(namespace, route.spec.stateful_set): route}

    @kopf.index(*ROUTES, id="route_claims", registry=registry)
    def route_claims(
        namespace: str, name: str, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
    ) -> dict[Any, tuple[str, str, str]]:
        if meta.get("deletionTimestamp"):
            return {}  # a route being deleted gives its service up
        try:
            service = RouteSpec.parse(name, spec).service
        except InvalidInput:
            return {}  # an invalid route routes nothing, so it keeps no service from another
        return {(namespace, service): (str(meta.get("creationTimestamp") or ""), name, uid)}

    @kopf.on.event("pods", labels=ROUTE_PODS, id="pod_changed", registry=registry)
    async def pod_changed(
        type: str | None,
        body: kopf.Body,
        namespace: str,
        routes: kopf.Index[Any, RouteRef],
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        if memo.ctx.closed:
            return  # the operator is stopping: the next one re-lists every pod
        sts = pods.owner(body)
        rec = pods.record(body)
        if (
            rec is not None
            and rec.bad_annotation is not None
            and memo.ctx.warnings.first(rec.uid, rec.bad_annotation)
        ):
            kopf.warn(
                body, reason="BadRoutingState", message=f"ignored routing-state {rec.bad_annotation!r:.60}"
            )
        uid = str(body.get("metadata", {}).get("uid", ""))
        if not memo.ctx.seen_pods.news(type, uid, rec):
            memo.ctx.metrics.pod_events.labels("unchanged").inc()
            return
        ran = await _reconcile_routes_of(
            memo.ctx, (namespace, sts), routes, route_pods, stateful_sets, "pod_changed"
        )
        memo.ctx.seen_pods.handled(uid, rec)  # a reconciliation that failed is retried by the tick
        memo.ctx.metrics.pod_events.labels("reconciled" if ran else "coalesced").inc()

    @kopf.on.event(*STATEFUL_SETS, id="stateful_set_changed", registry=registry)
    async def stateful_set_changed(
        type: str | None,
        body: kopf.Body,
        namespace: str,
        name: str,
        uid: str,
        routes: kopf.Index[Any, RouteRef],
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        if memo.ctx.closed:
            return  # the operator is stopping
        # The controller writes the status at every pod change (ready counts): mostly no news.
        rec = rollouts.record(body)
        if not memo.ctx.seen_stateful_sets.news(type, uid, rec):
            return
        await _reconcile_routes_of(
            memo.ctx, (namespace, name), routes, route_pods, stateful_sets, "stateful_set_changed"
        )
        memo.ctx.seen_stateful_sets.handled(uid, rec)

    @kopf.on.resume(*ROUTES, id="route_changed", registry=registry)
    @kopf.on.create(*ROUTES, id="route_changed", registry=registry)
    @kopf.on.update(*ROUTES, field="spec", id="route_changed", registry=registry)
    async def route_changed(
        namespace: str,
        name: str,
        uid: str,
        spec: kopf.Spec,
        old: Any,
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        route_claims: kopf.Index[Any, Any],
        memo: kopf.Memo,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        try:
            route = RouteRef(namespace, name, uid, RouteSpec.parse(name, spec))
        except InvalidInput as exc:  # said in the status; retried only when the spec changes
            log.warning("event=invalid_route namespace=%s route=%s error=%r", namespace, name, str(exc))
            patch.status.update(status.build_invalid(str(exc)))
            return
        with _retried(memo.ctx, route, "route_changed"):
            rival = await _rival(memo.ctx, route_claims, route)
            if rival is not None:
                await _refuse(memo.ctx, route, rival, patch)
                return
            memo.ctx.warnings.forget(uid)
            # A changed service or StatefulSet: the old table (and links) go, the new one is built.
            reconciler = await memo.ctx.open()
            try:
                configured = await reconciler.configure(route, _previous(namespace, name, uid, old))
            finally:  # a failed migration is said in the status too
                _report_migration(reconciler, route, patch)
        if configured:
            records = _records(route_pods, route, memo.ctx)
            await _reconcile(memo.ctx, route, records, _stateful_set(stateful_sets, route), "route_changed")

    @kopf.on.event(*ROUTES, id="route_gone", registry=registry)
    async def route_gone(type: str, namespace: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
        # A route can vanish without route_deleted: deleted before kopf put its finalizer on it
        # (its first tick may have claimed a table already), or its finalizer removed by hand.
        if type == "DELETED" and not memo.ctx.closed:
            await memo.ctx.gone(namespace, uid)

    @kopf.on.delete(*ROUTES, id="route_deleted", registry=registry)
    async def route_deleted(
        namespace: str, name: str, uid: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any
    ) -> None:
        route = _route(namespace, name, uid, spec)
        with _retried(memo.ctx, route, "route_deleted"):
            removal = await (await memo.ctx.open()).remove(route)
        memo.ctx.census.forget(route)
        memo.ctx.warnings.forget(uid)
        memo.ctx.status.forget(route)
        log.info("event=route_deleted namespace=%s route=%s links_removed=%d", namespace, name, removal.links)

    @kopf.timer(*ROUTES, interval=config.reconcile_interval, backoff=1, id="route_tick", registry=registry)
    async def route_tick(
        namespace: str,
        name: str,
        uid: str,
        spec: kopf.Spec,
        meta: kopf.Meta,
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        route_claims: kopf.Index[Any, Any],
        memo: kopf.Memo,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        if memo.ctx.closed:
            return  # the operator is stopping: a tick skipped changes nothing lasting
        if memo.ctx.sweep_due(namespace):
            await memo.ctx.sweep(namespace)
        if FINALIZER not in (meta.get("finalizers") or ()):
            # kopf starts timers before it puts its finalizer on a new route: a route deleted
            # before that goes without route_deleted, so a table claimed now would outlive it.
            return
        try:
            route = RouteRef(namespace, name, uid, RouteSpec.parse(name, spec))
        except InvalidInput:
            return  # route_changed failed it and said why in its status; nothing to tick
        try:
            with _retried(memo.ctx, route, "route_tick"):
                rival = await _rival(memo.ctx, route_claims, route)
                if rival is not None:
                    await _refuse(memo.ctx, route, rival, patch)
                    return
                memo.ctx.warnings.forget(uid)
                reconciler = await memo.ctx.open()
                # Not configured yet: the older route of its service went, or route_changed failed.
                try:
                    if reconciler.current(uid) is None and not await reconciler.configure(route):
                        return
                finally:  # a failed migration is said in the status too
                    _report_migration(reconciler, route, patch)
            if memo.ctx.census.due(route):
                found = _stateful_set(stateful_sets, route)
                selector = None if found is None else found.selector
                await memo.ctx.census.take(route, _indexed(route_pods, route), selector)
            records = _records(route_pods, route, memo.ctx)
            result = await _reconcile(
                memo.ctx, route, records, _stateful_set(stateful_sets, route), "route_tick"
            )
        except kopf.TemporaryError as exc:
            if memo.ctx.closed:
                # The operator stopped under a slow tick (kopf orphans it): not a Redis fault,
                # and kopf's API session is gone, so nothing may be patched.
                patch.clear()
                return
            # kopf applies the patch of a failed attempt too: say why nothing else is current.
            condition = status.store_unavailable(str(exc))
            if memo.ctx.status.due(route, condition):
                patch.status["conditions"] = condition["conditions"]
            raise
        if result is None:  # this tick carries a spec older than the one configured
            return
        last = reconciler.last_eviction.get(route.key)
        built = status.build_status(route, records, result.snapshot, last, result.plan.phases)
        if memo.ctx.status.due(route, built):
            patch.status.update(built)
