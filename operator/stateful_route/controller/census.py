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
import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import kubernetes

from stateful_route.controller import login
from stateful_route.controller.pods import PodRecord, owner, record
from stateful_route.controller.spec import RouteRef
from stateful_route.core.constants import STS_POD_NAME_LABEL

__all__ = ["Census", "gone_uids", "listed_records", "listed_uids"]

log = logging.getLogger("stateful_route.operator")


class Census:
    """When each route's pods were last listed, and the indexed pods the lists proved deleted."""

    def __init__(
        self,
        kubeconfig: str | None,
        *,
        interval: float,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._interval = interval
        self._margin = margin
        self._clock = clock
        self._taken: dict[str, float] = {}  # by route uid
        self._proved: dict[str, set[str]] = {}  # route uid -> pods it proved deleted, still indexed
        self._client: kubernetes.client.ApiClient | None = None
        self._client_lock = threading.Lock()  # lists run in threads

    def client(self) -> kubernetes.client.ApiClient:
        """The official client every list goes through, made at the first list: one per list would
        build an SSL context and open a connection each time."""
        with self._client_lock:
            if self._client is None:
                self._client = login.api_client(self._kubeconfig)
            return self._client

    def close(self) -> None:
        """Close the client's connections (the operator is stopping)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def gone(self) -> set[str]:
        """Uids of pods some route's census proved deleted although still indexed."""
        return set().union(*self._proved.values())

    def due(self, route: RouteRef) -> bool:
        """Whether the route's pods should be listed now (at most every ``interval``); if so,
        the census counts as taken."""
        now = self._clock()
        if now - self._taken.get(route.uid, float("-inf")) < self._interval:
            return False
        self._taken[route.uid] = now
        return True

    async def take(self, route: RouteRef, records: list[PodRecord], selector: str | None = None) -> None:
        """List the route's pods (those ``selector`` matches, if given: its StatefulSet's);
        remember indexed ones that are gone although kopf missed it."""
        started = datetime.datetime.now(datetime.UTC)
        try:
            listed = await listed_uids(
                route.namespace,
                route.spec.stateful_set,
                self._kubeconfig,
                selector=selector,
                client=self.client,
            )
        except Exception as exc:  # the census is a safety net: its failure must not stop reconciling
            log.warning(
                "event=census_failed namespace=%s route=%s error=%r", route.namespace, route.name, str(exc)
            )
            return
        gone = gone_uids(records, listed, started, self._margin)
        known = self._proved.get(route.uid, set())
        if gone - known:
            log.warning(
                "event=stale_index namespace=%s route=%s pods=%s action=treated_as_deleted",
                route.namespace, route.name, ",".join(sorted(r.name for r in records if r.uid in gone)),
            )  # fmt: skip
        # Each route keeps its own proofs (another route's census lists other pods) and forgets
        # uids no longer indexed: kopf saw them go after all.
        self._proved[route.uid] = (known & {r.uid for r in records}) | gone

    async def prepare(self) -> None:
        """Import the client's pod API now (about a second of imports, in a thread), so the first
        census does not hold up a tick past the time kopf gives a timer to stop."""
        await asyncio.to_thread(importlib.import_module, "kubernetes.client.api.core_v1_api")

    def forget(self, route: RouteRef) -> None:
        """The route is deleted: drop its census."""
        self._taken.pop(route.uid, None)
        self._proved.pop(route.uid, None)

    def present(self, records: Iterable[PodRecord]) -> list[PodRecord]:
        """The indexed pods, less those the census proved deleted."""
        gone = self.gone  # once, not per record: it joins every route's proofs
        return [r for r in records if r.uid not in gone]


async def _listed(
    namespace: str,
    stateful_set: str,
    kubeconfig: str | None,
    request_timeout: float,
    selector: str | None,
    client: Callable[[], kubernetes.client.ApiClient] | None,
) -> list[dict[str, Any]]:
    """The StatefulSet's pods as the API server lists them now (plain JSON bodies): those
    ``selector`` matches (its own selector), else every StatefulSet pod of the namespace."""

    def list_pods(api_client: kubernetes.client.ApiClient) -> list[dict[str, Any]]:
        api = kubernetes.client.CoreV1Api(api_client)
        response: Any = api.list_namespaced_pod(
            namespace,
            label_selector=selector or STS_POD_NAME_LABEL,
            _request_timeout=request_timeout,
            _preload_content=False,  # plain JSON: the client's models cost a millisecond per pod
        )
        bodies: list[dict[str, Any]] = json.loads(response.data)["items"]
        return [body for body in bodies if owner(body) == stateful_set]

    def listed() -> list[dict[str, Any]]:
        if client is not None:
            return list_pods(client())
        with login.api_client(kubeconfig) as fresh:
            return list_pods(fresh)

    return await asyncio.to_thread(listed)


async def listed_uids(
    namespace: str,
    stateful_set: str,
    kubeconfig: str | None,
    *,
    selector: str | None = None,
    client: Callable[[], kubernetes.client.ApiClient] | None = None,
) -> set[str]:
    """Uids of the StatefulSet's pods as the API server lists them now (through the client
    ``client()`` gives, else one made for the call; ``selector``: see ``listed_records``)."""
    bodies = await _listed(namespace, stateful_set, kubeconfig, 10, selector, client)
    return {body["metadata"]["uid"] for body in bodies}


async def listed_records(
    namespace: str,
    stateful_set: str,
    kubeconfig: str | None,
    request_timeout: float = 2.0,
    *,
    selector: str | None = None,
    client: Callable[[], kubernetes.client.ApiClient] | None = None,
) -> list[PodRecord]:
    """Records of the StatefulSet's pods as the API server lists them now: what a change to a
    route's table is confirmed against (kopf's index may be stale, see ``Census``). With
    ``selector`` (the StatefulSet's own), only its pods are listed, not the namespace's: the
    cost of a list stays that of one StatefulSet however many share the namespace."""
    bodies = await _listed(namespace, stateful_set, kubeconfig, request_timeout, selector, client)
    return [rec for rec in map(record, bodies) if rec is not None]


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
