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
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import kmock
import yaml

from stateful_route.controller.handlers import OperatorConfig
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.controller.runner import run
from stateful_route.core.constants import (
    GROUP,
    PLURAL,
    POD_INDEX_LABEL,
    ROUTING_ANNOTATION,
    STS_POD_NAME_LABEL,
    VERSION,
)
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


class Cluster:
    """Drives the emulated API the way kubelet, the StatefulSet controller and kubectl would."""

    def __init__(self, emulator: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
        self.api = emulator
        self.kubeconfig = kubeconfig
        self.sts_uid = str(uuid.uuid4())

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
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "labels": {STS_POD_NAME_LABEL: name, POD_INDEX_LABEL: str(index), "app": sts},
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

    async def create_pod(self, index: int, *, ready: bool = True) -> None:
        await self._call("POST", f"/api/v1/namespaces/{NS}/pods", self.pod_body(index, ready=ready))

    async def set_ready(self, index: int, ready: bool) -> None:
        """What kubelet does when a readiness probe flips."""
        await self._call(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{STS}-{index}/status",
            {"status": {"conditions": [self._ready(ready)]}},
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

    async def delete_pod(self, index: int) -> None:
        await self._call("DELETE", f"/api/v1/namespaces/{NS}/pods/{STS}-{index}")

    async def create_route(self, name: str = ROUTE, **spec: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StatefulRoute",
            # kmock keeps resourceVersion as given; kopf tests it when patching finalizers.
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "spec": {"statefulSetName": STS, **spec},
        }
        await self._call("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", body)

    async def start(self, pods: int, **spec: Any) -> None:
        """``pods`` ready pods game-0.. and a route over them."""
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

    def lose_deletion(self, index: int) -> None:
        """Remove a pod from the emulator's storage without telling any watcher, as a watch
        that missed the deletion (a replica paused by peering meanwhile) would leave it."""
        del self.api.objects["v1/pods", NS, f"{STS}-{index}"]

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


def _replica(
    cluster: Cluster,
    redis_url: str,
    prefix: str,
    peering: str | None,
    priority: int | None,
    metrics: OperatorMetrics | None,
    options: dict[str, Any],
) -> Callable[[Any, Any], Coroutine[Any, Any, None]]:
    """The operator run for ``cluster``, waiting for its stop and ready flags."""
    config = OperatorConfig(redis_url=redis_url, prefix=prefix, kubeconfig=str(cluster.kubeconfig), **options)

    def replica(stop: Any, ready: Any) -> Coroutine[Any, Any, None]:
        # kopf takes asyncio or threading events; ``run`` is annotated with the asyncio kind.
        return run(config, namespaces=[NS], peering=peering, priority=priority, metrics=metrics,
                   stop_flag=stop, ready_flag=ready)  # fmt: skip

    return replica


@contextlib.asynccontextmanager
async def operator(
    cluster: Cluster,
    redis_url: str,
    prefix: str,
    *,
    peering: str | None = None,
    priority: int | None = None,
    metrics: OperatorMetrics | None = None,
    **options: Any,
) -> AsyncIterator[asyncio.Task[None]]:
    """The real operator, in-process, logged in through the kubeconfig; stopped on exit."""
    replica = _replica(cluster, redis_url, prefix, peering, priority, metrics, options)
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
            yield cluster


@contextlib.asynccontextmanager
async def operator_thread(
    cluster: Cluster,
    redis_url: str,
    prefix: str,
    *,
    peering: str | None = None,
    priority: int | None = None,
    metrics: OperatorMetrics | None = None,
    **options: Any,
) -> AsyncIterator[threading.Thread]:
    """The real operator in a thread with its own event loop, as one replica of a Deployment.

    Two kopf operators cannot share an event loop, nor can kopf share one with other work it
    did not start: on stopping, it cancels every task it finds in its loop, and in the main
    thread it takes over Ctrl-C. A thread keeps it apart, like a separate pod.
    """
    replica = _replica(cluster, redis_url, prefix, peering, priority, metrics, options)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(replica(stop, ready)), name=f"operator-{priority}", daemon=True
    )
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, 10):
            raise TimeoutError("the operator did not start within 10 s")
        yield thread
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
