"""Running the operator in-process: a fresh kopf registry with our handlers, and kopf itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import kopf

from stateful_route.handlers import OperatorConfig, OperatorContext, register

__all__ = ["run"]


async def run(
    config: OperatorConfig,
    *,
    namespaces: Sequence[str] = (),
    peering: str | None = None,
    liveness: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or the process is signalled).

    No ``namespaces`` means all namespaces. With ``peering`` set, instances sharing that
    KopfPeering name elect one active operator (the others wait); without it, standalone.
    """
    registry = kopf.OperatorRegistry()
    register(registry, config)
    await kopf.operator(
        registry=registry,
        memo=kopf.Memo(ctx=OperatorContext(config)),
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=peering is None,
        peering_name=peering,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
