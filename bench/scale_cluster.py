"""What figure 12 runs against: a real control plane with an audit log of the operator's requests,
the kubelet stand-in, a namespace of StatefulSets and routes, a watch of their pods, and the
operator as a subprocess whose CPU time, memory and metrics are read from outside."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from stateful_route.core.constants import GROUP, PLURAL, POD_INDEX_LABEL, VERSION
from stateful_route.testing.controlplane import ADMIN_GROUP, ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.local_redis import free_port

__all__ = ["OPERATOR_USER", "Audit", "Operator", "PodWatch", "Workload", "audited_control_plane"]

ROOT = Path(__file__).parents[1]
OPERATOR_USER = "bench-operator"  # the operator's identity, the only one the audit log records
# One line per request, when its response is complete (a watch's when it ends).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


@contextlib.contextmanager
def audited_control_plane(folder: Path) -> Iterator[tuple[ControlPlane, Path, Path]]:
    """The control plane, the CRD installed; yields it, the operator's kubeconfig (a client
    certificate of its own, in system:masters) and the audit log of its requests."""
    folder.mkdir(parents=True, exist_ok=True)
    policy, log = folder / "audit-policy.json", folder / "audit.log"
    policy.write_text(json.dumps(AUDIT_POLICY))
    flags = ["--audit-policy-file", str(policy), "--audit-log-path", str(log), "--audit-log-format", "json"]
    with ControlPlane(folder / "control-plane", apiserver_args=flags) as plane:
        assert plane.pki is not None
        cert = plane.pki.client(OPERATOR_USER, ADMIN_GROUP)
        kubeconfig = plane.write_kubeconfig(folder / "operator.kubeconfig", OPERATOR_USER, cert=cert)
        plane.kubectl("apply", "-f", str(ROOT / "crds" / "statefulroute.yaml"))
        plane.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
        yield plane, kubeconfig, log


class Audit:
    """The operator's API requests from the audit log, counted by verb and resource."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def since(self, offset: int) -> tuple[Counter[str], int]:
        """Requests completed after ``offset`` bytes of the log; and the log's new end."""
        if not self.log.exists():
            return Counter(), 0
        with self.log.open("rb") as f:
            f.seek(offset)
            data = f.read()
        end = offset + data.rfind(b"\n") + 1
        counts: Counter[str] = Counter()
        for line in data[: end - offset].splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") != OPERATOR_USER:
                continue
            ref = event.get("objectRef") or {}
            counts[f"{event['verb']} {ref.get('resource', event.get('requestURI', '?'))}"] += 1
        return counts, end

    def end(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@dataclass
class Usage:
    """The operator process's CPU seconds and memory at one instant."""

    cpu: float
    rss_mib: float
    hwm_mib: float


class Operator:
    """``stateful-route operator`` as a subprocess (under cProfile with ``profile``), its log in
    ``folder``."""

    def __init__(
        self, folder: Path, *, namespace: str, redis_url: str, prefix: str, kubeconfig: Path,
        profile: Path | None = None, source: Path | None = None,
    ) -> None:  # fmt: skip
        """``source``: another checkout's ``operator/`` folder to run the operator from (a
        before-and-after comparison); this one's by default."""
        self.metrics_port = free_port()
        self.log = folder / "operator.log"
        args = [
            "operator", "--namespace", namespace, "--redis-url", redis_url, "--prefix", prefix,
            "--kubeconfig", str(kubeconfig), "--metrics-port", str(self.metrics_port),
            "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
        ]  # fmt: skip
        profiled = ["--profile", str(profile)] if profile is not None else []
        command = [sys.executable, "-m", "bench.profiled", *profiled, "--", *args]
        self._output = self.log.open("ab")
        env = {**os.environ, "PYTHONPATH": str(source)} if source is not None else None
        self.process = subprocess.Popen(
            command, stdout=self._output, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )

    def __enter__(self) -> Operator:
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                self.metrics()
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("the operator's metrics never answered")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()  # kopf stops gracefully; cProfile writes its file then
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._output.close()

    def usage(self) -> Usage:
        pid = self.process.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM")}
        return Usage(cpu, kib["VmRSS"] / 1024, kib["VmHWM"] / 1024)

    def metrics(self) -> dict[str, float]:
        """The operator's Prometheus samples, ``name{labels}`` -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def events(self) -> Counter[str]:
        """Pod events the operator received, by outcome (reconciled, coalesced, unchanged), and
        the seconds its pod_changed reconciliations took (``seconds``)."""
        samples = self.metrics()
        found: Counter[str] = Counter()
        for outcome in ("reconciled", "coalesced", "unchanged"):
            found[outcome] = int(samples.get(f'stateful_route_pod_events_total{{outcome="{outcome}"}}', 0))
        if not any(found.values()):  # an operator from before that counter: one reconciliation per event
            found["reconciled"] = int(
                samples.get('stateful_route_handler_seconds_count{handler="pod_changed"}', 0)
            )
        found["seconds_us"] = int(
            samples.get('stateful_route_handler_seconds_sum{handler="pod_changed"}', 0) * 1_000_000
        )
        return found

    def errors(self) -> list[str]:
        """Lines of the operator's log that say something went wrong."""
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if "level=error" in line or "Traceback" in line
        ]


@dataclass
class Pod:
    stateful_set: str
    ordinal: int
    uid: str
    ready: bool
    terminating: bool


@dataclass
class PodWatch:
    """Every pod of the namespace as the API server shows it now, from a watch of plain JSON
    (the client's models would cost the bench seconds at this size); when the last event came."""

    core: Any  # kubernetes.client.CoreV1Api, called for raw responses
    namespace: str
    pods: dict[str, Pod] = field(default_factory=dict)
    last_event: float = 0.0
    events: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> PodWatch:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def by_stateful_set(self, name: str) -> dict[int, Pod]:
        with self._lock:
            return {p.ordinal: p for p in self.pods.values() if p.stateful_set == name}

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
                    body = json.loads(listed.data)
                    with self._lock:
                        self.pods = {}
                        for item in body["items"]:
                            self._apply("ADDED", item)
                    version = body["metadata"]["resourceVersion"]
                version = self._follow(version)
            except Exception:  # a dropped watch: list again
                version = ""
                self._stop.wait(0.2)

    def _follow(self, version: str) -> str:
        response = self.core.list_namespaced_pod(
            self.namespace, watch=True, resource_version=version, timeout_seconds=30,
            allow_watch_bookmarks=True, _preload_content=False,
        )  # fmt: skip
        try:
            for line in response:
                if self._stop.is_set():
                    break
                event = json.loads(line)
                if event["type"] == "ERROR":
                    return ""
                version = event["object"]["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                with self._lock:
                    self._apply(event["type"], event["object"])
                    self.last_event = time.monotonic()
                    self.events += 1
        finally:
            response.release_conn()
        return version

    def _apply(self, kind: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        if kind == "DELETED":
            self.pods.pop(meta["name"], None)
            return
        owners = [r["name"] for r in meta.get("ownerReferences") or () if r.get("kind") == "StatefulSet"]
        index = (meta.get("labels") or {}).get(POD_INDEX_LABEL)
        if not owners or index is None:
            return
        conditions = (body.get("status") or {}).get("conditions") or ()
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        self.pods[meta["name"]] = Pod(owners[0], int(index), meta["uid"], ready, "deletionTimestamp" in meta)


class Workload:
    """The StatefulSets and routes of the bench, through the official client as admin."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        # Any: plain JSON bodies go in and raw responses come out, which the client's stubs refuse.
        self.client: Any = plane.api_client()
        self.namespace = namespace
        self.core: Any = kubernetes.client.CoreV1Api(self.client)
        self.apps: Any = kubernetes.client.AppsV1Api(self.client)
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.client)

    def create_namespace(self, kubelet: Kubelet) -> None:
        self.core.create_namespace({"metadata": {"name": self.namespace}})
        kubelet.manage(self.namespace)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.core.read_namespaced_service_account("default", self.namespace)
                return
            except kubernetes.client.exceptions.ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create(self, name: str, replicas: int) -> None:
        """A Parallel StatefulSet (1 s grace) and its route (evicting terminating pods at once)."""
        labels = {"app": name}
        body = {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"serviceName": name, "replicas": replicas, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "server", "image": "game:1"}]}}},
        }  # fmt: skip
        self.apps.create_namespaced_stateful_set(self.namespace, body)
        route = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StatefulRoute", "metadata": {"name": name},
                 "spec": {"statefulSetName": name, "onTermination": "Evict"}}  # fmt: skip
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, route)

    def scale(self, name: str, replicas: int) -> None:
        self.apps.patch_namespaced_stateful_set_scale(name, self.namespace, {"spec": {"replicas": replicas}})

    def touch(self, pod: str, value: str) -> None:
        """A change the operator's record of the pod does not see: a pod event, nothing else."""
        patch = {"metadata": {"annotations": {"bench.stateful-route.dev/touched": value}}}
        self.core.patch_namespaced_pod(pod, self.namespace, patch, _preload_content=False)

    def delete_ordinals(self, ordinals: range) -> None:
        """Delete, in one call, the pods of every StatefulSet at these ordinals."""
        selector = f"{POD_INDEX_LABEL} in ({','.join(map(str, ordinals))})"
        self.core.delete_collection_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False
        )

    def roll(self, name: str, max_unavailable: int) -> None:
        """A rolling update: a new template, ``max_unavailable`` pods replaced at a time."""
        patch = {"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}},
            "template": {"metadata": {"annotations": {"bench.stateful-route.dev/rev": str(time.time())}}},
        }}  # fmt: skip
        self.apps.patch_namespaced_stateful_set(name, self.namespace, patch)

    def rolled(self, name: str) -> bool:
        status = self.apps.read_namespaced_stateful_set(name, self.namespace).status
        assert status is not None
        return bool(
            status.update_revision == status.current_revision
            and status.updated_replicas == status.replicas == status.ready_replicas
        )
