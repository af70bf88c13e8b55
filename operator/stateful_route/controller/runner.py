"""Running the operator in-process: a fresh kopf registry with our handlers, and kopf itself."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence

import kopf

from stateful_route.controller import metrics as operator_metrics
from stateful_route.controller.config import OperatorConfig, check_watch
from stateful_route.controller.context import OperatorContext
from stateful_route.controller.handler_logs import routine_successes_at_debug
from stateful_route.controller.handlers import ROUTINE, announce_migration, register
from stateful_route.controller.peering import check_peering
from stateful_route.core.urls import redact_url
from stateful_route.core.version import VERSION

__all__ = ["run"]

log = logging.getLogger("stateful_route.operator")


async def run(
    config: OperatorConfig,
    *,
    namespaces: Sequence[str] = (),
    peering: str | None = None,
    priority: int | None = None,
    liveness: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    metrics: operator_metrics.OperatorMetrics | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or the process is signalled).

    No ``namespaces`` means all namespaces. With ``peering`` set, instances sharing that
    KopfPeering name elect one active operator, the one with the highest ``priority``; the others
    wait, and take over when it leaves. Equal priorities would pause every instance (kopf's rule),
    so without one each instance draws a random priority.
    ``metrics`` lets an embedding program (the demo) read what the operator counted.
    Bad options raise InvalidInput naming the option before anything starts, a missing peering
    object (kopf would wait for it forever, silently) included.
    """
    check_watch(namespaces, peering, priority, liveness)
    if peering is not None:
        await check_peering(peering, namespaces, config.kubeconfig)
    registry = kopf.OperatorRegistry()
    register(registry, config)
    if metrics is None:
        # Per-route series fade out after five missed ticks: a paused HA replica's go silent.
        metrics = operator_metrics.OperatorMetrics(stale_after=5 * config.reconcile_interval)
    ctx = OperatorContext(
        config, metrics=metrics, namespaces=tuple(namespaces), on_migration=announce_migration
    )
    if peering is not None and priority is None:
        priority = 1 + secrets.randbelow(1_000_000)
    with (
        operator_metrics.serve(ctx.metrics, config.metrics_port) as port,
        routine_successes_at_debug(ROUTINE),
    ):
        log.info(
            "event=operator_start version=%s redis=%s prefix=%s namespaces=%s peering=%s priority=%s "
            "metrics_port=%s",
            VERSION, redact_url(config.redis_url), config.prefix, ",".join(namespaces) or "*", peering or "-",
            priority, port,
        )  # fmt: skip
        await kopf.operator(
            registry=registry,
            memo=kopf.Memo(ctx=ctx),
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=peering is None,
            peering_name=peering,
            priority=priority,
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
