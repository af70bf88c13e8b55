"""A stand-in for kubelet (and the scheduler) on a real control plane: it registers one node,
binds the pods of the namespaces it manages to it, reports them Running and Ready, flips
readiness when a test asks, and runs graceful deletion the way kubelet does.

No container runs. A pod's one real process is its preStop exec hook, which runs here as a local
subprocess (for instance ``stateful-route handoff``; see ``hooks``).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import kubernetes
from kubernetes.client.exceptions import ApiException

from stateful_route.testing.hooks import Hook, HookRun, pre_stop_command

__all__ = ["NODE", "Kubelet"]

NODE = "stand-in-node"
DEFAULT_SCHEDULER = "default-scheduler"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an API method for its raw JSON reply: the typed models drop fields, cannot read some
    replies (a binding answers with a Status) and want models where plain bodies do."""
    response = call(*args, _preload_content=False, **kwargs)
    return json.loads(response.data) if response.data else None


class Kubelet:
    """Plays kubelet for pods on ``node`` (a context manager: watches until exit).

    ``exit_after``: seconds a container takes to exit after its SIGTERM (after its preStop hook);
    None keeps it running to the end of its grace period, as a process that ignores SIGTERM.
    ``ready_by_default``: False starts new pods NotReady (until ``set_ready``).
    """

    def __init__(self, kubeconfig: Path, node: str = NODE, *, exit_after: float | None = None) -> None:
        self.node = node
        self.exit_after = exit_after
        self.ready_by_default = True
        self.hooks: list[HookRun] = []
        self._client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(
            config_file=str(kubeconfig)
        )
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._managed: set[str] = set()
        self._started: set[str] = set()  # pod uids reported running
        self._terminating: dict[str, float] = {}  # uid -> deadline (the deletionTimestamp)
        self._addresses = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []  # API failures in the background, for tests to assert none

    def __enter__(self) -> Self:
        self.register()
        watcher = threading.Thread(target=self._watch, name="kubelet-watch", daemon=True)
        watcher.start()
        self._threads.append(watcher)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(10)
        self._client.close()

    def errors_in(self, namespace: str) -> list[str]:
        """Background failures about this namespace's pods."""
        with self._lock:
            return [e for e in self.errors if f" {namespace}/" in e]

    def manage(self, namespace: str) -> None:
        """Bind this namespace's unscheduled pods to the node from now on."""
        with self._lock:
            self._managed.add(namespace)

    def register(self) -> None:
        """Create the Node, Ready, with room for any number of test pods."""
        room = {"cpu": "1000", "memory": "1000Gi", "pods": "10000"}
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
            "status": {"capacity": room, "allocatable": room,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
        }  # fmt: skip
        try:
            _json(self._core.create_node, body)
        except ApiException as error:
            if error.status != 409:
                raise

    def set_ready(self, namespace: str, name: str, ready: bool) -> None:
        """What kubelet reports when a readiness probe starts failing or passing again."""
        status = "True" if ready else "False"
        conditions = [{"type": kind, "status": status, "lastTransitionTime": _now()}
                      for kind in ("ContainersReady", "Ready")]  # fmt: skip
        containers = _json(self._core.read_namespaced_pod, name, namespace)["spec"]["containers"]
        statuses = [{"name": c["name"], "ready": ready} for c in containers]
        patch = {"status": {"conditions": conditions, "containerStatuses": statuses}}
        _json(self._core.patch_namespaced_pod_status, name, namespace, patch)

    # The watch: one thread, every pod of the cluster.

    def _watch(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = _json(self._core.list_pod_for_all_namespaces)
                    for pod in listed["items"]:
                        self._handle("ADDED", pod)
                    version = listed["metadata"]["resourceVersion"]
                version = self._follow(version)
            except ApiException as error:
                if error.status == 410:  # expired: list again
                    version = ""
                    continue
                self._failed(f"watch: {error.status} {error.reason}")
                self._stop.wait(0.5)
            except Exception as error:  # a dropped connection: resume from the last version
                if not self._stop.is_set():
                    self._failed(f"watch: {error!r}")
                self._stop.wait(0.5)

    def _follow(self, version: str) -> str:
        stream = kubernetes.watch.Watch()
        for event in stream.stream(
            self._core.list_pod_for_all_namespaces, resource_version=version, timeout_seconds=5,
            allow_watch_bookmarks=True,
        ):  # fmt: skip
            if self._stop.is_set():
                stream.stop()
                break
            raw = event["raw_object"]
            if event["type"] == "ERROR":
                if raw.get("code") == 410:
                    return ""
                raise RuntimeError(f"watch error: {raw}")
            version = raw["metadata"]["resourceVersion"]
            if event["type"] != "BOOKMARK":
                self._handle(event["type"], raw)
        return version

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
        if kind == "DELETED":
            with self._lock:
                self._started.discard(uid)
                self._terminating.pop(uid, None)
            return
        node = spec.get("nodeName")
        if not node:
            with self._lock:
                managed = namespace in self._managed
            if (
                managed
                and not meta.get("deletionTimestamp")
                and spec.get("schedulerName") == DEFAULT_SCHEDULER
            ):
                self._call(f"bind {namespace}/{name}", self._bind, namespace, name)
            return
        if node != self.node:
            return
        if meta.get("deletionTimestamp"):
            deadline = _seconds(meta["deletionTimestamp"])
            with self._lock:
                known = uid in self._terminating
                self._terminating[uid] = deadline  # a second delete may shorten the grace
            if not known:
                self._spawn(f"terminate {namespace}/{name}", self._terminate, pod)
            return
        with self._lock:
            started = uid in self._started
            self._started.add(uid)
        if not started and pod.get("status", {}).get("phase") != "Running":
            self._call(f"start {namespace}/{name}", self._run, pod)

    def _bind(self, namespace: str, name: str) -> None:
        # What the scheduler does: the binding subresource sets spec.nodeName and PodScheduled.
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}  # fmt: skip
        _json(self._core.create_namespaced_pod_binding, name, namespace, body)

    def _run(self, pod: dict[str, Any]) -> None:
        """Report the pod's containers started, and Ready unless tests say otherwise."""
        with self._lock:
            self._addresses += 1
            address = f"10.244.{self._addresses // 250}.{self._addresses % 250 + 1}"
        ready = "True" if self.ready_by_default else "False"
        now = _now()
        conditions = [{"type": kind, "status": "True", "lastTransitionTime": now}
                      for kind in ("PodReadyToStartContainers", "Initialized")]  # fmt: skip
        conditions += [{"type": kind, "status": ready, "lastTransitionTime": now}
                       for kind in ("ContainersReady", "Ready")]  # fmt: skip
        containers = [
            {"name": c["name"], "image": c["image"], "imageID": f"stand-in://{c['image']}",
             "containerID": f"stand-in://{pod['metadata']['uid']}/{c['name']}",
             "ready": ready == "True", "started": True, "restartCount": 0,
             "state": {"running": {"startedAt": now}}}
            for c in pod["spec"]["containers"]
        ]  # fmt: skip
        patch = {"status": {"phase": "Running", "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                            "podIP": address, "podIPs": [{"ip": address}], "startTime": now,
                            "conditions": conditions, "containerStatuses": containers}}  # fmt: skip
        meta = pod["metadata"]
        _json(self._core.patch_namespaced_pod_status, meta["name"], meta["namespace"], patch)

    # Graceful deletion, one thread per terminating pod.

    def _terminate(self, pod: dict[str, Any]) -> None:
        """Kubelet's graceful deletion: the preStop hooks, then SIGTERM and the wait for the
        containers to exit, all bounded by the deletionTimestamp; then the terminal status and
        the final delete with grace 0."""
        meta = pod["metadata"]
        uid = meta["uid"]
        for container in pod["spec"]["containers"]:
            if command := pre_stop_command(container):
                self._hook(pod, container, command)
        exits = time.time() + self.exit_after if self.exit_after is not None else float("inf")
        self._wait_until(uid, lambda deadline: time.time() >= min(deadline, exits))
        if self._stop.is_set():
            return
        containers = [
            {"name": c["name"], "ready": False, "started": False,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": _now()}}}
            for c in pod["spec"]["containers"]
        ]  # fmt: skip
        conditions = [{"type": kind, "status": "False", "lastTransitionTime": _now()}
                      for kind in ("ContainersReady", "Ready")]  # fmt: skip
        # Since Kubernetes 1.27 kubelet writes a terminal phase before it deletes the pod.
        status = {"status": {"phase": "Succeeded", "conditions": conditions, "containerStatuses": containers}}
        name, namespace = meta["name"], meta["namespace"]
        patch = self._core.patch_namespaced_pod_status
        self._call(f"stop {namespace}/{name}", _json, patch, name, namespace, status)
        options = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        self._call(f"delete {namespace}/{name}", self._delete, name, namespace, options)

    def _delete(self, name: str, namespace: str, options: dict[str, Any]) -> None:
        try:
            _json(self._core.delete_namespaced_pod, name, namespace, body=options)
        except ApiException as error:
            if error.status not in (404, 409):  # gone already, or a new pod of that name
                raise

    def _hook(self, pod: dict[str, Any], container: dict[str, Any], command: list[str]) -> None:
        hook = Hook(pod, container, command)
        self._wait_until(pod["metadata"]["uid"], lambda deadline: hook.done() or time.time() >= deadline)
        run = hook.finish()
        with self._lock:
            self.hooks.append(run)

    def _wait_until(self, uid: str, done: Callable[[float], bool]) -> None:
        """Poll ``done(deadline)`` with the pod's current deadline until true or the stand-in stops."""
        while not self._stop.is_set():
            with self._lock:
                deadline = self._terminating.get(uid, 0.0)
            if done(deadline):
                return
            self._stop.wait(0.05)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=self._call, args=(name, target, *args), name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _call(self, what: str, action: Callable[..., object], *args: Any) -> None:
        try:
            action(*args)
        except Exception as error:
            self._failed(f"{what}: {error!r}")

    def _failed(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)
