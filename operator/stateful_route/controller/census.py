"""A periodic census of a route's pods through the official client, to catch a stale index.

kopf's indexes drop an object only when they see its deletion. A replica that was paused by
peering (a higher-priority one appeared) and later resumes re-lists pods, but never hears of
pods deleted meanwhile: they would stay in its index, ready, and be routed to. The census
lists the pods now and names the indexed ones that are certainly gone: absent from the list
although created well before it began (a pod created during the list may be missing from it).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable

import kubernetes

from stateful_route.controller import login
from stateful_route.controller.pods import PodRecord, owner
from stateful_route.core.constants import STS_POD_NAME_LABEL

__all__ = ["gone_uids", "listed_uids"]


async def listed_uids(namespace: str, stateful_set: str, kubeconfig: str | None) -> set[str]:
    """Uids of the StatefulSet's pods as the API server lists them now."""

    def list_pods() -> set[str]:
        with login.api_client(kubeconfig) as client:
            api = kubernetes.client.CoreV1Api(client)
            listed = api.list_namespaced_pod(
                namespace, label_selector=STS_POD_NAME_LABEL, _request_timeout=10
            )
            bodies = [client.sanitize_for_serialization(pod) for pod in listed.items]
        return {body["metadata"]["uid"] for body in bodies if owner(body) == stateful_set}

    return await asyncio.to_thread(list_pods)


def gone_uids(
    records: Iterable[PodRecord], listed: set[str], started: datetime.datetime, margin: float
) -> set[str]:
    """Indexed pods that the list proves deleted: absent, and created more than ``margin``
    seconds before the list began (API server and operator clocks may disagree that much)."""
    cutoff = started - datetime.timedelta(seconds=margin)
    return {r.uid for r in records if r.uid not in listed and _created(r) < cutoff}


def _created(record: PodRecord) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(record.created.replace("Z", "+00:00"))
    except ValueError:  # no timestamp: nothing says it is young
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
