"""Which StatefulRoutes exist, as the API server lists them now (official client).

kopf's route index may still hold a route deleted while this replica was paused by peering:
pod events would then reconcile it, and a table nobody owns any more would be claimed again.
Before claiming such a table, the reconciler asks here. And a table whose owner is absent from
such a list was orphaned (its route went without its deletion handler): the sweep removes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes

from stateful_route.controller import login
from stateful_route.controller.spec import Listed
from stateful_route.core.constants import GROUP, PLURAL, VERSION

__all__ = ["listed_routes", "route_exists"]


async def listed_routes(namespace: str, kubeconfig: str | None, request_timeout: float = 2.0) -> Listed:
    """The StatefulRoutes of ``namespace`` as the API server lists them now."""
    return Listed.parse(await _items(namespace, kubeconfig, request_timeout))


async def _items(namespace: str, kubeconfig: str | None, request_timeout: float) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]]:
        with login.api_client(kubeconfig) as client:
            api = kubernetes.client.CustomObjectsApi(client)
            found: Any = api.list_namespaced_custom_object(  # a plain JSON dict, typed ``object``
                GROUP, VERSION, namespace, PLURAL, _request_timeout=request_timeout
            )
        return list(found.get("items") or ())

    return await asyncio.to_thread(listed)


async def route_exists(
    namespace: str, uid: str, kubeconfig: str | None, request_timeout: float = 2.0
) -> bool:
    """Whether the route with ``uid`` is listed in ``namespace`` and not being deleted."""
    metas = [item.get("metadata") or {} for item in await _items(namespace, kubeconfig, request_timeout)]
    return any(meta.get("uid") == uid and not meta.get("deletionTimestamp") for meta in metas)
