"""Parity: the same steps against the emulator (kmock with our additions, what the fast tests and
the demo run on) and against the real API server, comparing what the operator or a client sees.
One small test per behaviour the emulator fakes: lists, label selectors, server-side tables,
graceful deletion, watch bookmarks. Where the emulator differs on purpose or at a cost, the
difference is asserted here, so a change on either side shows.

On each side: a StatefulSet ``game`` of three Ready pods (the emulator's pods are made the way
``sim.Cluster`` makes them; the real ones by the StatefulSet controller and the kubelet stand-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import urllib3

from stateful_route.controller import census
from stateful_route.controller.pods import PodRecord, record
from stateful_route.core.constants import GROUP, PLURAL, VERSION
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.sim import NS, STS, Cluster, emulated_cluster
from tests.controlplane.rollout_judge import Workload, live
from tests.tools import KUBECTL


@dataclass
class Side:
    """One API server, as a client reaches it."""

    name: str
    kubeconfig: Path
    namespace: str
    cluster: Cluster | None = None  # the emulator's driver (None: the real server)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A CoreV1Api method's raw JSON reply (blocking: run it off the loop, the emulator
        serves from it)."""
        with kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig)) as client:
            api = kubernetes.client.CoreV1Api(client)
            reply = getattr(api, method)(*args, _preload_content=False, **kwargs)
            return json.loads(reply.data) if reply.data else None

    async def pods(self, **options: Any) -> list[dict[str, Any]]:
        listed = await asyncio.to_thread(self.call, "list_namespaced_pod", self.namespace, **options)
        return list(listed["items"])

    async def kubectl(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        return out.decode()


@pytest.fixture
def sides(
    control_plane: ControlPlane, installed: Any, namespace: str, tmp_path: Path
) -> Callable[[], contextlib.AbstractAsyncContextManager[tuple[Side, Side]]]:
    """``sides()``: the emulator and the real server, each with the StatefulSet's three pods."""

    @contextlib.asynccontextmanager
    async def both() -> AsyncIterator[tuple[Side, Side]]:
        workload = Workload(control_plane, namespace)
        await workload.create(3, grace=2)
        async with emulated_cluster(tmp_path) as cluster:
            await cluster.create_stateful_set(3)
            for index in range(3):
                await cluster.create_pod(index)
            await workload.until(lambda _, pods: len(pods) == 3 and all(live(p) for p in pods.values()))
            yield (
                Side("emulator", cluster.kubeconfig, NS, cluster),
                Side("real", control_plane.kubeconfig, namespace),
            )
        workload.client.close()

    return both


def seen(rec: PodRecord | None) -> tuple[Any, ...]:
    """What the operator reads from a pod, less what differs by construction (uids, times)."""
    assert rec is not None
    return rec.name, rec.ordinal, rec.ready, rec.terminating, rec.routing, rec.revision is not None


async def test_lists_give_the_operator_the_same_pods(sides: Any):
    async with sides() as (emulated, real):
        found = {}
        for side in (emulated, real):
            listed = await asyncio.to_thread(side.call, "list_namespaced_pod", side.namespace)
            assert (listed["kind"], listed["apiVersion"]) == ("PodList", "v1")
            assert listed["metadata"]["resourceVersion"]
            # The operator's own list (the census and the confirming list before a table change).
            records = await census.listed_records(side.namespace, STS, str(side.kubeconfig))
            found[side.name] = sorted(seen(r) for r in records)
            # Difference: the real server's list items carry no kind or apiVersion (the list
            # does); the emulator returns the objects as they were sent. The operator reads neither.
            kinds = {(item.get("kind"), item.get("apiVersion")) for item in listed["items"]}
            assert kinds == ({("Pod", "v1")} if side.cluster else {(None, None)})
        assert found["emulator"] == found["real"]
        assert [name for name, *_ in found["real"]] == ["game-0", "game-1", "game-2"]


SELECTORS = [
    "app=game", "app==game", "app!=lobby", "app", "!app", "!lobby", "app=lobby",
    "statefulset.kubernetes.io/pod-name", "statefulset.kubernetes.io/pod-name=game-1",
    "app=game,statefulset.kubernetes.io/pod-name!=game-1",
    "app in (game,lobby)", "app notin (game)", "lobby notin (x)",
    "statefulset.kubernetes.io/pod-name in (game-0, game-2),app",
]  # fmt: skip


async def test_label_selectors_select_the_same_pods(sides: Any):
    """Set-based terms (`in`, `notin`) were not understood by the emulator: fixed there."""
    async with sides() as (emulated, real):
        for selector in SELECTORS:
            names = [sorted(p["metadata"]["name"] for p in await s.pods(label_selector=selector))
                     for s in (emulated, real)]  # fmt: skip
            assert names[0] == names[1], selector


async def test_server_side_tables_print_the_same_columns(sides: Any):
    async with sides() as (emulated, real):
        route = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StatefulRoute", "metadata": {"name": "room"},
                 "spec": {"statefulSetName": STS}}  # fmt: skip
        for side in (emulated, real):
            with kubernetes.config.new_client_from_config(config_file=str(side.kubeconfig)) as client:
                custom = kubernetes.client.CustomObjectsApi(client)
                await asyncio.to_thread(
                    custom.create_namespaced_custom_object, GROUP, VERSION, side.namespace, PLURAL,
                    {**route, "metadata": {"name": "room", "namespace": side.namespace}},
                )  # fmt: skip
        printed = {}
        for side in (emulated, real):
            tables = [await side.kubectl("get", *what) for what in
                      (["pods"], ["pods", "-o", "wide"], ["sroute"], ["sroute", "-o", "wide"])]  # fmt: skip
            rows = [[line.split() for line in table.strip().splitlines()] for table in tables]
            printed[side.name] = rows
        for emulated_rows, real_rows in zip(printed["emulator"], printed["real"], strict=True):
            assert emulated_rows[0] == real_rows[0]  # the header: the same columns
            assert len(emulated_rows) == len(real_rows)
        pods, wide, routes, _ = printed["real"]
        assert pods[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert [r[:4] for r in pods[1:]] == [[f"game-{i}", "1/1", "Running", "0"] for i in range(3)]
        assert [r[:4] for r in printed["emulator"][0][1:]] == [r[:4] for r in pods[1:]]
        assert wide[0][5:] == ["IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
        # Difference: the emulator's pods were never scheduled nor given an address.
        assert [r[5:7] for r in printed["emulator"][1][1:]] == [["<none>", "<none>"]] * 3
        assert routes[0] == ["NAME", "SERVICE", "ROUTABLE", "BEST", "LINKS", "AGE"]
        # Without an operator no status: empty cells on both (null cells: the emulator printed
        # `<none>` in them, fixed there).
        assert routes[1][0] == "room"
        assert len(routes[1]) == 2
        assert printed["emulator"][2][1][:1] == routes[1][:1]
        assert len(printed["emulator"][2][1]) == 2


async def test_graceful_deletion_shows_the_operator_the_same_pod_until_the_end(sides: Any):
    """`kubectl delete pod game-1 --grace-period=2`: the pod stays, Ready, with its
    deletionTimestamp until its grace ends, then goes."""
    async with sides() as (emulated, real):
        watched: dict[str, list[tuple[str, Any]]] = {}
        for side in (emulated, real):
            events: list[tuple[str, Any]] = []
            before = await side.pods(label_selector="statefulset.kubernetes.io/pod-name=game-1")
            uid = before[0]["metadata"]["uid"]
            watching = asyncio.create_task(asyncio.to_thread(_watch_pod, side, "game-1", uid, events, 8))
            await asyncio.sleep(0.5)  # the watch is open
            deleted_at = time.time()
            if side.cluster is not None:
                await side.cluster.delete_pod(1, grace=2)
            else:
                await asyncio.to_thread(side.call, "delete_namespaced_pod", "game-1", side.namespace,
                                        grace_period_seconds=2)  # fmt: skip
            [pod] = await side.pods(label_selector="statefulset.kubernetes.io/pod-name=game-1")
            assert pod["metadata"]["uid"] == uid
            assert pod["metadata"]["deletionGracePeriodSeconds"] == 2
            rec = record(pod)
            assert rec is not None
            assert rec.deadline is not None
            assert deleted_at - 1 <= rec.deadline <= deleted_at + 3  # whole seconds
            assert seen(rec)[2:4] == (True, True)  # Ready, terminating: routable under Handoff
            await watching
            watched[side.name] = events
        # Difference: the emulator holds the pod with a finalizer of its own, as kubelet would
        # (kmock removes an object with a deletionTimestamp at once otherwise).
        # (Its release is one more MODIFIED, finalizer gone, still Ready.)
        assert watched["emulator"] == [("MODIFIED", (True, True))] * 2 + [("DELETED", (True, True))]
        # Difference: kubelet reports the containers stopped (Ready False, phase Succeeded)
        # before it deletes the pod; the emulator deletes a pod still Ready. The operator evicts
        # at either: a terminating pod not Ready is unroutable, as a deleted one.
        real_kinds = [kind for kind, _ in watched["real"]]
        assert real_kinds[0] == "MODIFIED"
        assert real_kinds[-1] == "DELETED"
        assert watched["real"][0][1] == (True, True)
        assert (False, True) in [state for _, state in watched["real"]]


def _watch_pod(side: Side, name: str, uid: str, events: list[tuple[str, Any]], within: float) -> None:
    """Until the pod ``uid`` is DELETED (or ``within`` s): each event's kind and (ready,
    terminating) as the operator records them; the first ADDED (the watch's start) left out."""
    with kubernetes.config.new_client_from_config(config_file=str(side.kubeconfig)) as client:
        api = kubernetes.client.CoreV1Api(client)
        stream = kubernetes.watch.Watch()
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            for event in stream.stream(api.list_namespaced_pod, side.namespace,
                                       field_selector=f"metadata.name={name}", timeout_seconds=round(within),
                                       _request_timeout=within):  # fmt: skip
                raw = event["raw_object"]
                if raw["metadata"].get("uid") != uid or event["type"] == "ADDED":
                    continue
                rec = record(raw)
                events.append((event["type"], seen(rec)[2:4] if rec else None))
                if event["type"] == "DELETED":
                    stream.stop()


async def test_watch_bookmarks(sides: Any):
    """Watches as kopf and the kubelet stand-in open them (from a list's resourceVersion,
    bookmarks allowed), and as a streaming list (`sendInitialEvents`, kopf's `initial_streaming`,
    which the operator leaves off), while nothing changes."""
    async with sides() as (emulated, real):
        resumed: dict[str, list[dict[str, Any]]] = {}
        streamed: dict[str, list[dict[str, Any]]] = {}
        for side in (emulated, real):
            listed = await asyncio.to_thread(side.call, "list_namespaced_pod", side.namespace)
            version = listed["metadata"]["resourceVersion"]
            resumed[side.name] = await asyncio.to_thread(_watch, side, resource_version=version)
            streamed[side.name] = await asyncio.to_thread(
                _watch, side, send_initial_events=True, resource_version_match="NotOlderThan"
            )
        names = [("ADDED", f"game-{i}") for i in range(3)]
        # From a version, the real server sends nothing that happened before it; bookmarks come
        # every minute and just before the watch's timeout (none seen in these 2 s watches).
        assert {e["type"] for e in resumed["real"]} <= {"BOOKMARK"}
        # A streaming list: every pod ADDED, then a BOOKMARK marking the end of the initial events.
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in streamed["real"][:3]] == names
        end = streamed["real"][3]
        assert end["type"] == "BOOKMARK"
        assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        # Difference: the emulator (kmock) ignores the version and replays every object as ADDED,
        # and sends no bookmark at all. kopf then sees each object twice at its start (its
        # handlers are idempotent), and with initial_streaming on would never learn the initial
        # listing ended: keep it off while the emulator serves the fast tests and the demo.
        for events in (resumed["emulator"], streamed["emulator"]):
            assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in events) == names


def _watch(side: Side, seconds: int = 2, **options: Any) -> list[dict[str, Any]]:
    """The events of a pod watch of ``seconds`` (the emulator ignores timeoutSeconds: the
    client's read timeout ends its watch)."""
    with kubernetes.config.new_client_from_config(config_file=str(side.kubeconfig)) as client:
        api = kubernetes.client.CoreV1Api(client)
        events = []
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            for event in kubernetes.watch.Watch().stream(
                api.list_namespaced_pod, side.namespace, allow_watch_bookmarks=True,
                timeout_seconds=seconds, _request_timeout=seconds + 1, **options,
            ):  # fmt: skip
                events.append({"type": event["type"], "object": event["raw_object"]})
        return events
