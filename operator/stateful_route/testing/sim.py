"""A simulated cluster: kmock's Kubernetes API emulator driven like kubelet, the StatefulSet
controller and kubectl would, and the real operator running against it over HTTP.

Used by ``stateful-route demo`` and by the end-to-end tests; needs the ``demo`` extra (kmock).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import kmock
import yaml

from stateful_route.controller.config import OperatorConfig
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.controller.runner import run
from stateful_route.core.constants import (
    GROUP,
    PLURAL,
    POD_INDEX_LABEL,
    REVISION_LABEL,
    ROUTING_ANNOTATION,
    STS_POD_NAME_LABEL,
    VERSION,
)
from stateful_route.testing import workarounds
from stateful_route.testing.apiserver import KubectlEmulator

NS = "games"
STS = "game"
ROUTE = "room"
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
RESOURCES: dict[str, Any] = {
    "v1/pods": {"kind": "Pod", "singular": "pod", "shortnames": {"po"}, "namespaced": True, "verbs": VERBS,
                "subresources": {"status"}},
    "v1/namespaces": {"kind": "Namespace", "singular": "namespace", "shortnames": {"ns"}, "namespaced": False,
                      "verbs": VERBS},
    "v1/events": {"kind": "Event", "singular": "event", "shortnames": {"ev"}, "namespaced": True,
                  "verbs": VERBS},
    "apps/v1/statefulsets": {"kind": "StatefulSet", "singular": "statefulset", "shortnames": {"sts"},
                             "namespaced": True, "verbs": VERBS, "subresources": {"status"}},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "singular": "customresourcedefinition",
        "shortnames": {"crd"},
        "namespaced": False,
        "verbs": VERBS,
    },
    f"{GROUP}/{VERSION}/{PLURAL}": {
        "kind": "StatefulRoute",
        "singular": "statefulroute",
        "shortnames": {"sroute"},
        "namespaced": True,
        "verbs": VERBS,
        "subresources": {"status"},
    },
    "kopf.dev/v1/kopfpeerings": {"kind": "KopfPeering", "singular": "kopfpeering", "namespaced": True,
                                 "verbs": VERBS},
}  # fmt: skip
# In a source checkout (the demo and the tests); an installed wheel has no CRD file and the
# emulator then serves the resource without its definition, which kopf does not read anyway.
CRD = Path(__file__).parents[3] / "crds" / "statefulroute.yaml"


class NamingEmulator(KubectlEmulator):
    """kmock's emulator, plus the API server's naming of objects created with ``generateName``
    (kopf names its events that way; without this every event after the first conflicts)."""

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.method.value == "POST" and isinstance(data, dict):
            meta = data.get("metadata") or {}
            if meta.get("generateName") and not meta.get("name"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:10]}"
        return await super()._handle(request)


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """Serve the resources kopf discovers and watches (without them its observers wait forever)."""
    for key, info in RESOURCES.items():
        emulator.resources[key] = info


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


PreStop = Callable[[int], Awaitable[None]]
KUBELET_HOLD = "sim.stateful-route.dev/kubelet"  # holds a terminating pod in kmock until removed


class Cluster:
    """Drives the emulated API the way kubelet, the StatefulSet controller and kubectl would."""

    def __init__(self, emulator: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
        self.api = emulator
        self.kubeconfig = kubeconfig
        self.sts_uid = str(uuid.uuid4())
        self.replicas = 0
        self.revision = "rev-1"  # the StatefulSet's update revision: what new pods run
        self.revisions: dict[int, str] = {}  # each pod's controller-revision-hash
        self._removals: set[asyncio.Task[None]] = set()
        self._terminating: set[int] = set()
        # False: the StatefulSet lives only here, as an operator that never reads StatefulSets
        # (before rollout awareness) would see the cluster; the bench compares the two.
        self.stateful_set_visible = True

    async def close(self) -> None:
        """Stop graceful removals still waiting (the cluster is going away)."""
        for task in self._removals:
            task.cancel()
        await asyncio.gather(*self._removals, return_exceptions=True)

    async def _call(self, method: str, path: str, body: Any = None, content: str = "application/json") -> Any:
        kwargs: dict[str, Any] = {"headers": {"Content-Type": content}}
        if body is not None:
            kwargs["json"] = body
        async with self.api.request(method, path, **kwargs) as response:
            payload = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path} -> {response.status}: {payload}")
            return payload

    def setup(self) -> None:
        """The namespace and the CRD, as `kubectl apply -k manifests/base/` would create them (stored
        directly: kmock 0.8 cannot parse POSTs of cluster-scoped core objects)."""
        self.api.objects["v1/namespaces", None, NS] = {"metadata": {"name": NS}}
        if not CRD.exists():
            return
        crd = yaml.safe_load(CRD.read_text())
        self.api.objects[
            "apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"]
        ] = crd

    def pod_body(self, index: int, *, ready: bool = True, sts: str = STS) -> dict[str, Any]:
        name = f"{sts}-{index}"
        self.revisions[index] = self.revision
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _rfc3339(datetime.datetime.now(datetime.UTC)),
                "labels": {STS_POD_NAME_LABEL: name, POD_INDEX_LABEL: str(index), "app": sts,
                           REVISION_LABEL: self.revision},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts, "uid": self.sts_uid,
                     "controller": True}
                ],
            },
            "spec": {"containers": [{"name": "server", "image": "game:1"}]},
            "status": {"phase": "Running", "conditions": [self._ready(ready)]},
        }  # fmt: skip

    @staticmethod
    def _ready(ready: bool) -> dict[str, str]:
        return {"type": "Ready", "status": "True" if ready else "False"}

    async def create_pod(self, index: int, *, ready: bool = True, sts: str = STS) -> None:
        await self._call("POST", f"/api/v1/namespaces/{NS}/pods", self.pod_body(index, ready=ready, sts=sts))

    async def set_ready(self, index: int, ready: bool, *, sts: str = STS, stamped: bool = False) -> None:
        """What kubelet does when a readiness probe flips; ``stamped`` also writes the condition's
        lastTransitionTime (now, in whole seconds, as kubelet does)."""
        condition: dict[str, str] = self._ready(ready)
        if stamped:
            condition["lastTransitionTime"] = _rfc3339(datetime.datetime.now(datetime.UTC))
        await self._call(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{sts}-{index}/status",
            {"status": {"conditions": [condition]}},
            "application/merge-patch+json",
        )

    async def annotate(self, index: int, value: str | None) -> None:
        """`kubectl annotate pod game-N stateful-route.dev/routing-state=VALUE` (None removes it)."""
        await self._call(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{STS}-{index}",
            {"metadata": {"annotations": {ROUTING_ANNOTATION: value}}},
            "application/merge-patch+json",
        )

    async def touch(self, index: int, value: str) -> None:
        """A pod event that changes nothing the operator reads: another annotation."""
        await self._call(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{STS}-{index}",
            {"metadata": {"annotations": {"example.com/touched": value}}},
            "application/merge-patch+json",
        )

    async def delete_pod(self, index: int, *, grace: float = 0, sts: str = STS) -> None:
        """`kubectl delete pod`: at once with ``grace`` 0; otherwise graceful (see ``terminate``),
        and the pod is removed in the background when its grace ends. Pods of another
        StatefulSet than ``STS`` are only deleted at once."""
        if sts != STS:
            await self._call("DELETE", f"/api/v1/namespaces/{NS}/pods/{sts}-{index}")
            return
        if grace <= 0:
            await self._remove(index)
            return
        deadline = await self.terminate(index, grace)
        task = asyncio.create_task(self._run_out(index, deadline, asyncio.sleep(grace)))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def pod(self, index: int) -> dict[str, Any]:
        return dict(await self._call("GET", f"/api/v1/namespaces/{NS}/pods/{STS}-{index}"))

    async def terminate(self, index: int, grace: float) -> float:
        """What the API server does on a graceful deletion: the pod gets its ``deletionTimestamp``
        (now + grace, to the second, as Kubernetes writes it) and stays, Ready, until removed.
        kmock removes an object with a deletionTimestamp at once unless a finalizer holds it, so
        one stands in for kubelet until the pod is removed. Returns the deadline (Unix seconds)."""
        deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)
        meta = {"deletionTimestamp": _rfc3339(deadline), "deletionGracePeriodSeconds": round(grace),
                "finalizers": [KUBELET_HOLD]}  # fmt: skip
        self._terminating.add(index)
        await self._call(
            "PATCH", f"/api/v1/namespaces/{NS}/pods/{STS}-{index}", {"metadata": meta},
            "application/merge-patch+json",
        )  # fmt: skip
        return deadline.replace(microsecond=0).timestamp()

    async def remove_gracefully(
        self, index: int, grace: float, *, exit_after: float | None = None, pre_stop: PreStop | None = None
    ) -> None:
        """A graceful deletion to its end, as kubelet runs it: mark the pod terminating, run its
        ``pre_stop`` hook (or let the process run ``exit_after`` seconds, default the whole grace),
        at most until its deadline, then remove the pod."""
        deadline = await self.terminate(index, grace)
        work = (
            pre_stop(index)
            if pre_stop is not None
            else asyncio.sleep(grace if exit_after is None else exit_after)
        )
        await self._run_out(index, deadline, work)

    async def _run_out(self, index: int, deadline: float, work: Awaitable[None]) -> None:
        """Kubelet's side of a graceful deletion: the pod runs ``work`` at most until its
        ``deadline`` (the deletionTimestamp: the moment it is killed), then it is removed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(work, max(0.0, deadline - time.time()))
        await self._remove(index)

    async def _remove(self, index: int) -> None:
        """The pod is gone: deleted at once, or its graceful deletion released."""
        path = f"/api/v1/namespaces/{NS}/pods/{STS}-{index}"
        with contextlib.suppress(RuntimeError):  # already gone
            if index in self._terminating:
                await self._call(
                    "PATCH", path, {"metadata": {"finalizers": []}}, "application/merge-patch+json"
                )
            else:
                await self._call("DELETE", path)
        self._terminating.discard(index)
        self.revisions.pop(index, None)

    def stateful_set_body(self, replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": STS, "namespace": NS, "uid": self.sts_uid, "resourceVersion": "1"},
            "spec": {"replicas": replicas, "serviceName": STS, "selector": {"matchLabels": {"app": STS}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
            "status": {"replicas": replicas, "currentRevision": self.revision,
                       "updateRevision": self.revision},
        }  # fmt: skip

    async def create_stateful_set(self, replicas: int) -> None:
        """The StatefulSet object itself (its pods are created separately)."""
        self.replicas = replicas
        if not self.stateful_set_visible:
            return
        await self._call(
            "POST", f"/apis/apps/v1/namespaces/{NS}/statefulsets", self.stateful_set_body(replicas)
        )

    async def stateful_set(self) -> dict[str, Any]:
        """The StatefulSet object as the API server has it."""
        return dict(await self._call("GET", f"/apis/apps/v1/namespaces/{NS}/statefulsets/{STS}"))

    async def patch_stateful_set(self, patch: dict[str, Any]) -> None:
        if not self.stateful_set_visible:
            return
        await self._call(
            "PATCH",
            f"/apis/apps/v1/namespaces/{NS}/statefulsets/{STS}",
            patch,
            "application/merge-patch+json",
        )

    async def start_rollout(self, revision: str, *, partition: int = 0) -> None:
        """`kubectl apply` of a new pod template: the update revision changes, pods not yet."""
        self.revision = revision
        await self.patch_stateful_set(
            {"spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}},
             "status": {"updateRevision": revision}}
        )  # fmt: skip

    async def replace_pod(
        self,
        index: int,
        grace: float,
        *,
        exit_after: float | None = None,
        pre_stop: PreStop | None = None,
        start_after: float = 0.5,
    ) -> None:
        """One step of a rolling update: remove the pod gracefully, create it again from the
        update revision, NotReady for ``start_after`` seconds, then Ready."""
        await self.remove_gracefully(index, grace, exit_after=exit_after, pre_stop=pre_stop)
        await self.create_pod(index, ready=start_after <= 0)
        if start_after > 0:
            await asyncio.sleep(start_after)
            await self.set_ready(index, True)

    async def roll(
        self,
        revision: str,
        grace: float,
        *,
        partition: int = 0,
        exit_after: float | None = None,
        pre_stop: PreStop | None = None,
        start_after: float = 0.5,
        step: Callable[[int], None] | None = None,
    ) -> None:
        """The StatefulSet controller's RollingUpdate: from the highest ordinal down to the
        partition, one pod at a time, each new pod Ready before the next is replaced; then
        ``status.currentRevision`` becomes the update revision (only when every pod runs it)."""
        await self.start_rollout(revision, partition=partition)
        for index in range(self.replicas - 1, partition - 1, -1):
            if self.revisions.get(index) == revision:
                continue
            if step is not None:
                step(index)
            await self.replace_pod(
                index, grace, exit_after=exit_after, pre_stop=pre_stop, start_after=start_after
            )
        if partition == 0:
            await self.patch_stateful_set({"status": {"currentRevision": revision}})

    async def scale(self, replicas: int, *, grace: float = 0) -> None:
        """`kubectl scale`: new pods are created Ready; removed ones go from the highest down."""
        old, self.replicas = self.replicas, replicas
        await self.patch_stateful_set({"spec": {"replicas": replicas}, "status": {"replicas": replicas}})
        for index in range(old, replicas):
            await self.create_pod(index)
        for index in range(old - 1, replicas - 1, -1):
            if grace > 0:
                await self.remove_gracefully(index, grace)
            else:
                await self.delete_pod(index)

    async def create_route(self, name: str = ROUTE, **spec: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StatefulRoute",
            # kmock keeps resourceVersion as given; kopf tests it when patching finalizers.
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "1",
                "creationTimestamp": _rfc3339(datetime.datetime.now(datetime.UTC)),
            },
            "spec": {"statefulSetName": STS, **spec},
        }
        await self._call("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", body)

    async def update_route(self, name: str = ROUTE, **spec: Any) -> None:
        """`kubectl patch sroute NAME --type merge -p '{"spec": {...}}'` (None removes a field)."""
        await self._call(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{name}",
            {"spec": spec},
            "application/merge-patch+json",
        )

    async def start(self, pods: int, **spec: Any) -> None:
        """A StatefulSet of ``pods`` ready pods game-0.. and a route over them."""
        await self.create_stateful_set(pods)
        for index in range(pods):
            await self.create_pod(index)
        await self.create_route(**spec)

    async def delete_route(self, name: str = ROUTE) -> None:
        await self._call("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{name}")

    async def route(self, name: str = ROUTE) -> dict[str, Any]:
        return dict(await self._call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{name}"))

    async def create_peering(self, name: str) -> None:
        """The KopfPeering object HA operators meet in (kopf does not create it)."""
        body = {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "status": {},
        }
        await self._call("POST", f"/apis/kopf.dev/v1/namespaces/{NS}/kopfpeerings", body)

    async def peering(self, name: str) -> dict[str, Any]:
        """The KopfPeering object: ``status`` maps each live instance to its priority."""
        return dict(await self._call("GET", f"/apis/kopf.dev/v1/namespaces/{NS}/kopfpeerings/{name}"))

    def lose_deletion(self, index: int, *, sts: str = STS) -> None:
        """Remove a pod from the emulator's storage without telling any watcher, as a watch
        that missed the deletion (a replica paused by peering meanwhile) would leave it."""
        del self.api.objects["v1/pods", NS, f"{sts}-{index}"]

    def lose_route_deletion(self, name: str = ROUTE) -> None:
        """Remove a route from the emulator's storage without telling any watcher: a deletion the
        operator never saw (its watch missed it, or it ran elsewhere meanwhile)."""
        del self.api.objects[f"{GROUP}/{VERSION}/{PLURAL}", NS, name]

    async def remove_route_finalizers(self, name: str = ROUTE) -> None:
        """`kubectl patch sroute NAME --type merge -p '{"metadata":{"finalizers":null}}'`: what an
        admin does to a route stuck in deletion while no operator runs (it is then gone)."""
        await self._call(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{name}",
            {"metadata": {"finalizers": None}},
            "application/merge-patch+json",
        )

    async def pods(self) -> list[dict[str, Any]]:
        """Every pod of the namespace, as `kubectl get pods -o json` lists them."""
        return list((await self._call("GET", f"/api/v1/namespaces/{NS}/pods"))["items"])

    async def routes(self) -> list[dict[str, Any]]:
        """Every StatefulRoute of the namespace (those being deleted included)."""
        return list((await self._call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"))["items"])

    async def events(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", f"/api/v1/namespaces/{NS}/events"))["items"])


def write_kubeconfig(folder: Path, server: str) -> Path:
    """A kubeconfig like kubectl's, pointing at the emulator."""
    path = folder / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [
                    {"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": NS}}
                ],
                "current-context": "kmock",
            }
        )
    )
    return path


class Reachable(Protocol):
    """Where an operator logs in: the emulated cluster, or a real control plane."""

    @property
    def kubeconfig(self) -> Path: ...


def _replica(
    cluster: Reachable,
    redis_url: str,
    prefix: str,
    peering: str | None,
    priority: int | None,
    metrics: OperatorMetrics | None,
    namespaces: list[str] | None,
    options: dict[str, Any],
) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
    """The operator run for ``cluster`` (in ``namespaces``, default NS), waiting for its stop and
    ready flags."""
    config = OperatorConfig(redis_url=redis_url, prefix=prefix, kubeconfig=str(cluster.kubeconfig), **options)

    def replica(stop: Any, ready: Any) -> Coroutine[Any, Any, None]:
        # kopf takes asyncio or threading events; ``run`` is annotated with the asyncio kind.
        return run(config, namespaces=namespaces or [NS], peering=peering, priority=priority,
                   metrics=metrics, stop_flag=stop, ready_flag=ready)  # fmt: skip

    return replica


@contextlib.asynccontextmanager
async def operator(
    cluster: Reachable,
    redis_url: str,
    prefix: str,
    *,
    peering: str | None = None,
    priority: int | None = None,
    metrics: OperatorMetrics | None = None,
    namespaces: list[str] | None = None,
    **options: Any,
) -> AsyncIterator[asyncio.Task[None]]:
    """The real operator, in-process, logged in through the kubeconfig; stopped on exit."""
    replica = _replica(cluster, redis_url, prefix, peering, priority, metrics, namespaces, options)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(replica(stop, ready))
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task


@contextlib.asynccontextmanager
async def emulated_cluster(folder: Path | None = None) -> AsyncIterator[Cluster]:
    """kmock's emulator on a free loopback port, with our namespace, CRD and a kubeconfig."""
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stateful-route-")))
        async with NamingEmulator() as emulator, kmock.Server(emulator):
            declare(emulator)
            cluster = Cluster(emulator, write_kubeconfig(folder, str(emulator.url).rstrip("/")))
            cluster.setup()
            try:
                yield cluster
            finally:
                await cluster.close()


@contextlib.asynccontextmanager
async def operator_thread(
    cluster: Reachable,
    redis_url: str,
    prefix: str,
    *,
    peering: str | None = None,
    priority: int | None = None,
    metrics: OperatorMetrics | None = None,
    namespaces: list[str] | None = None,
    thread_name: str | None = None,
    **options: Any,
) -> AsyncIterator[threading.Thread]:
    """The real operator in a thread with its own event loop, as one replica of a Deployment.

    Two kopf operators cannot share an event loop, nor can kopf share one with other work it
    did not start: on stopping, it cancels every task it finds in its loop, and in the main
    thread it takes over Ctrl-C. A thread keeps it apart, like a separate pod.
    """
    workarounds.plain_traceback_carets()  # a second thread now formats tracebacks too
    replica = _replica(cluster, redis_url, prefix, peering, priority, metrics, namespaces, options)
    stop, ready = threading.Event(), threading.Event()
    name = thread_name or f"operator-{priority}"
    thread = threading.Thread(target=lambda: asyncio.run(replica(stop, ready)), name=name, daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, 10):
            raise TimeoutError("the operator did not start within 10 s")
        yield thread
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
