"""The kopf wiring: each handler is a line or two over plain functions (this module and ``runner``
are the only ones importing kopf).

Pods are only *watched* (``@kopf.index`` + ``@kopf.on.event``): no finalizers, no annotations,
nothing written to them. State-tracking handlers are used for our own StatefulRoutes only.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import kopf

from stateful_route.controller import census, login, pods, rollouts, status
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.controller.reconciler import Reconciler, Result
from stateful_route.controller.spec import RouteName, RouteRef, RouteSpec
from stateful_route.core.constants import GROUP, PLURAL, STS_POD_NAME_LABEL, VERSION
from stateful_route.core.errors import InvalidInput, StatefulRouteError
from stateful_route.store import connection
from stateful_route.store.connection import AnyRedis

__all__ = ["OperatorConfig", "OperatorContext", "register"]

log = logging.getLogger("stateful_route.operator")

ROUTES = (GROUP, VERSION, PLURAL)
STATEFUL_SETS = ("apps", "v1", "statefulsets")
ROUTE_PODS = {STS_POD_NAME_LABEL: kopf.PRESENT}


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs (from the command line)."""

    redis_url: str
    prefix: str = "sr"
    redis_timeout: float = 5.0
    reconcile_interval: float = 1.0  # timer per route: grace expiry, pods' own Shutdown reports
    status_interval: float = 2.0  # the status mirror is written at most this often per route
    kubeconfig: str | None = None
    metrics_port: int | None = None  # Prometheus /metrics (0: a free port); off when None
    census_interval: float = 30.0  # how often each route's pods are listed to catch a stale index
    census_clock_margin: float = 60.0  # only pods older than this can be proved deleted


@dataclass
class OperatorContext:
    """Shared by every handler through kopf's memo."""

    config: OperatorConfig
    redis: AnyRedis | None = None
    reconciler: Reconciler | None = None
    status_written: dict[RouteName, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    warned: dict[str, str] = field(default_factory=dict)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    census_at: dict[RouteName, float] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # uids the census proved deleted

    def census_due(self, route: RouteRef) -> bool:
        """Whether the route's pods should be listed now (at most every ``census_interval``)."""
        now = time.monotonic()
        if now - self.census_at.get(route.key, float("-inf")) < self.config.census_interval:
            return False
        self.census_at[route.key] = now
        return True

    async def take_census(self, route: RouteRef, records: list[pods.PodRecord]) -> None:
        """List the route's pods; remember indexed ones that are gone although kopf missed it."""
        started = datetime.datetime.now(datetime.UTC)
        try:
            listed = await census.listed_uids(
                route.namespace, route.spec.stateful_set, self.config.kubeconfig
            )
        except Exception as exc:  # the census is a safety net: its failure must not stop reconciling
            log.warning(
                "event=census_failed namespace=%s route=%s error=%r", route.namespace, route.name, str(exc)
            )
            return
        gone = census.gone_uids(records, listed, started, self.config.census_clock_margin)
        if gone - self.gone:
            log.warning(
                "event=stale_index namespace=%s route=%s pods=%s action=treated_as_deleted",
                route.namespace, route.name, ",".join(sorted(r.name for r in records if r.uid in gone)),
            )  # fmt: skip
        # Forget uids no longer indexed: kopf saw them go after all.
        self.gone = (self.gone & {r.uid for r in records}) | gone

    async def open(self) -> Reconciler:
        """Connect to Redis (once)."""
        if self.reconciler is None:
            self.redis = connection.connect(self.config.redis_url)
            self.reconciler = Reconciler(
                self.redis, prefix=self.config.prefix, timeout=self.config.redis_timeout
            )
        return self.reconciler

    async def close(self) -> None:
        """Disconnect from Redis."""
        if self.redis is not None:
            await self.redis.aclose()
        self.redis = self.reconciler = None

    def status_due(self, route: RouteRef, new: dict[str, Any]) -> bool:
        """Whether the status changed and the last write is old enough (throttling under churn)."""
        last = self.status_written.get(route.key)
        now = time.monotonic()
        if last is not None and (last[1] == new or now - last[0] < self.config.status_interval):
            return False
        self.status_written[route.key] = (now, new)
        return True


def _route(namespace: str, name: str, uid: str, spec: Any) -> RouteRef:
    try:
        return RouteRef(namespace, name, uid, RouteSpec.parse(name, spec))
    except InvalidInput as exc:
        raise kopf.PermanentError(f"invalid StatefulRoute spec: {exc}") from exc


def _indexed(route_pods: kopf.Index[Any, Any], route: RouteRef) -> list[pods.PodRecord]:
    return list(route_pods.get((route.namespace, route.spec.stateful_set), []))


def _records(route_pods: kopf.Index[Any, Any], route: RouteRef, ctx: OperatorContext) -> list[pods.PodRecord]:
    return [r for r in _indexed(route_pods, route) if r.uid not in ctx.gone]


def _stateful_set(
    stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord], route: RouteRef
) -> rollouts.StatefulSetRecord | None:
    found = list(stateful_sets.get((route.namespace, route.spec.stateful_set), []))
    return found[0] if found else None


async def _reconcile(
    ctx: OperatorContext,
    route: RouteRef,
    records: Iterable[pods.PodRecord],
    stateful_set: rollouts.StatefulSetRecord | None,
    handler: str,
) -> Result:
    metrics = ctx.metrics
    with metrics.handler_seconds.labels(handler).time():
        try:
            result = await (await ctx.open()).reconcile(route, records, stateful_set)
        except StatefulRouteError as exc:
            metrics.redis_errors.labels(handler).inc()
            log.warning(
                "event=reconcile_failed namespace=%s route=%s handler=%s error=%r",
                route.namespace, route.name, handler, str(exc),
            )  # fmt: skip
            raise kopf.TemporaryError(f"reconciling {route.namespace}/{route.name}: {exc}", delay=1) from exc
    service = route.spec.service
    metrics.reconciled(route.namespace, service, result.snapshot, result.evictions, result.wrote)
    metrics.forget(route.namespace, service, sorted(result.plan.gone))
    for eviction in result.evictions:
        log.info(
            "event=evicted namespace=%s route=%s pod=%d removed=%d rebound=%d reason=%r",
            route.namespace, route.name, eviction.pod, eviction.removed, eviction.rebound, eviction.reason,
        )  # fmt: skip
        kopf.info(kopf.Body(route.body), reason="Evicted", message=eviction.message)
    return result


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Attach every handler to ``registry``."""

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = f"{GROUP}/cleanup"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.posting.level = 20  # INFO: evictions are posted as events
        # Resources and namespaces are discovered once at start: no cluster-wide watch of
        # namespaces and CRDs, which keeps the RBAC small (the CRD is installed with us).
        settings.scanning.disabled = True
        await memo.ctx.open()

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
    def routes(namespace: str, name: str, uid: str, spec: kopf.Spec, **_: Any) -> dict[Any, RouteRef]:
        try:
            route = RouteRef(namespace, name, uid, RouteSpec.parse(name, spec))
        except InvalidInput:
            return {}  # reported by the route's own handlers
        return {(namespace, route.spec.stateful_set): route}

    @kopf.on.event("pods", labels=ROUTE_PODS, id="pod_changed", registry=registry)
    async def pod_changed(
        body: kopf.Body,
        namespace: str,
        routes: kopf.Index[Any, RouteRef],
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        sts = pods.owner(body)
        rec = pods.record(body)
        if (
            rec is not None
            and rec.bad_annotation is not None
            and memo.ctx.warned.get(rec.uid) != rec.bad_annotation
        ):
            memo.ctx.warned[rec.uid] = rec.bad_annotation
            kopf.warn(
                body, reason="BadRoutingState", message=f"ignored routing-state {rec.bad_annotation!r:.60}"
            )
        for route in routes.get((namespace, sts), []):
            records = _records(route_pods, route, memo.ctx)
            await _reconcile(memo.ctx, route, records, _stateful_set(stateful_sets, route), "pod_changed")

    @kopf.on.event(*STATEFUL_SETS, id="stateful_set_changed", registry=registry)
    async def stateful_set_changed(
        namespace: str,
        name: str,
        routes: kopf.Index[Any, RouteRef],
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        for route in routes.get((namespace, name), []):
            records = _records(route_pods, route, memo.ctx)
            sts = _stateful_set(stateful_sets, route)
            await _reconcile(memo.ctx, route, records, sts, "stateful_set_changed")

    @kopf.on.resume(*ROUTES, id="route_changed", registry=registry)
    @kopf.on.create(*ROUTES, id="route_changed", registry=registry)
    @kopf.on.update(*ROUTES, field="spec", id="route_changed", registry=registry)
    async def route_changed(
        namespace: str,
        name: str,
        uid: str,
        spec: kopf.Spec,
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        route = _route(namespace, name, uid, spec)
        await (await memo.ctx.open()).configure(route)
        records = _records(route_pods, route, memo.ctx)
        await _reconcile(memo.ctx, route, records, _stateful_set(stateful_sets, route), "route_changed")

    @kopf.on.delete(*ROUTES, id="route_deleted", registry=registry)
    async def route_deleted(
        namespace: str, name: str, uid: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any
    ) -> None:
        route = _route(namespace, name, uid, spec)
        removal = await (await memo.ctx.open()).remove(route)
        memo.ctx.metrics.forget(namespace, route.spec.service, removal.pods)
        log.info("event=route_deleted namespace=%s route=%s links_removed=%d", namespace, name, removal.links)

    @kopf.timer(*ROUTES, interval=config.reconcile_interval, backoff=1, id="route_tick", registry=registry)
    async def route_tick(
        namespace: str,
        name: str,
        uid: str,
        spec: kopf.Spec,
        route_pods: kopf.Index[Any, pods.PodRecord],
        stateful_sets: kopf.Index[Any, rollouts.StatefulSetRecord],
        memo: kopf.Memo,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        route = _route(namespace, name, uid, spec)
        if memo.ctx.census_due(route):
            await memo.ctx.take_census(route, _indexed(route_pods, route))
        records = _records(route_pods, route, memo.ctx)
        result = await _reconcile(memo.ctx, route, records, _stateful_set(stateful_sets, route), "route_tick")
        reconciler = await memo.ctx.open()
        last = reconciler.last_eviction.get(route.key)
        built = status.build_status(route, records, result.snapshot, last, result.plan.phases)
        if memo.ctx.status_due(route, built):
            patch.status.update(built)
