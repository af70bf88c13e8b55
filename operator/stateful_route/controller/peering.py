"""Checking, before kopf starts, that the peering object an HA operator will meet in exists.

kopf does not create it, and an operator whose peering object is missing waits for it forever
without a word: a namespaced operator (``--namespace``) uses a ``KopfPeering`` in each namespace it
watches, one watching all namespaces the ``ClusterKopfPeering`` of that name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import kubernetes

from stateful_route.controller import login
from stateful_route.core.errors import InvalidInput

__all__ = ["check_peering"]

log = logging.getLogger("stateful_route.operator")

GROUP, VERSION = "kopf.dev", "v1"
REQUEST_TIMEOUT = 10.0  # seconds per read


def _missing(name: str, namespaces: Sequence[str], kubeconfig: str | None, timeout: float) -> str | None:
    """What to create (or grant) so the operator can meet in peering ``name``; None if nothing."""
    with login.api_client(kubeconfig) as client:
        api = kubernetes.client.CustomObjectsApi(client)
        # No namespaces: the operator watches them all and meets in the ClusterKopfPeering.
        where: list[str | None] = [*namespaces] if namespaces else [None]
        for namespace in where:
            try:
                if namespace is None:
                    api.get_cluster_custom_object(
                        GROUP, VERSION, "clusterkopfpeerings", name, _request_timeout=timeout
                    )
                else:
                    api.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, "kopfpeerings", name, _request_timeout=timeout
                    )
            except kubernetes.client.ApiException as exc:
                if namespace is None:
                    what = f"ClusterKopfPeering {name!r} (kubectl apply -k manifests/ha/)"
                else:
                    what = (
                        f"KopfPeering {name!r} in namespace {namespace!r} (with --namespace, kopf meets in "
                        "a kopf.dev/v1 KopfPeering in each watched namespace, not in a ClusterKopfPeering; "
                        "see manifests/ha-namespaced/)"
                    )
                if exc.status == 404:
                    return f"no {what}: create it (and its CRD) before starting"
                if exc.status in (401, 403):
                    return f"cannot read {what}: grant get, list, watch, patch on it to the operator"
                raise
    return None


async def check_peering(name: str, namespaces: Sequence[str], kubeconfig: str | None) -> None:
    """Raise InvalidInput("peering", ...) naming what to create when the peering object this
    operator would use is missing or unreadable. Other faults (the API server unreachable) are only
    logged: kopf retries them itself."""
    try:
        problem = await asyncio.to_thread(_missing, name, namespaces, kubeconfig, REQUEST_TIMEOUT)
    except Exception as exc:  # any fault here is kopf's to retry, not a bad option
        log.warning("event=peering_unchecked peering=%s error=%r", name, f"{type(exc).__name__}: {exc}")
        return
    if problem is not None:
        raise InvalidInput("peering", problem)
