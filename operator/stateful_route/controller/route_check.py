"""Whether a StatefulRoute still exists, as the API server lists it now (official client).

kopf's route index may still hold a route deleted while this replica was paused by peering:
pod events would then reconcile it, and a table nobody owns any more would be claimed again.
Before claiming such a table, the reconciler asks here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes

from stateful_route.controller import login
from stateful_route.core.constants import GROUP, PLURAL, VERSION

__all__ = ["route_exists"]


async def route_exists(
    namespace: str, uid: str, kubeconfig: str | None, request_timeout: float = 2.0
) -> bool:
    """Whether the route with ``uid`` is listed in ``namespace`` and not being deleted."""

    def listed() -> bool:
        with login.api_client(kubeconfig) as client:
            api = kubernetes.client.CustomObjectsApi(client)
            found: Any = api.list_namespaced_custom_object(  # a plain JSON dict, typed ``object``
                GROUP, VERSION, namespace, PLURAL, _request_timeout=request_timeout
            )
        metas = [item.get("metadata") or {} for item in found.get("items") or ()]
        return any(meta.get("uid") == uid and not meta.get("deletionTimestamp") for meta in metas)

    return await asyncio.to_thread(listed)
