"""The kubelet stand-in on the real API server: pods are bound to its node and run, readiness
flips on request, and a graceful deletion keeps the pod (deletionTimestamp set) while its preStop
hook runs and its grace lasts, then removes it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import NODE, Kubelet


def pod_body(name: str, *, grace: int = 30, pre_stop: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server",
        "image": "game:1",
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }
    if pre_stop:
        container["lifecycle"] = {"preStop": {"exec": {"command": pre_stop}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]}}  # fmt: skip


def wait_for(check: Any, within: float, every: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something truthy (returned), failing after ``within`` s."""
    deadline = time.monotonic() + within
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {check.__doc__ or check}")
        time.sleep(every)
    return found


def condition(pod: Any, kind: str) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == kind), None)


def test_a_pod_is_bound_to_the_node_and_runs_ready(
    control_plane: ControlPlane, kubelet: Kubelet, core: kubernetes.client.CoreV1Api, namespace: str
):
    core.create_namespaced_pod(namespace, pod_body("solo"))

    def running() -> Any:
        pod = core.read_namespaced_pod("solo", namespace)
        return pod if pod.status.phase == "Running" and condition(pod, "Ready") == "True" else None

    pod = wait_for(running, 10)
    assert pod.spec.node_name == NODE
    assert condition(pod, "PodScheduled") == "True"  # written by the binding, as the scheduler's
    assert pod.status.pod_ip
    assert pod.status.container_statuses[0].ready
    table = control_plane.kubectl("get", "pod", "solo", "-n", namespace, "--no-headers").stdout.split()
    assert table[1:3] == ["1/1", "Running"]

    kubelet.set_ready(namespace, "solo", False)
    pod = core.read_namespaced_pod("solo", namespace)
    assert condition(pod, "Ready") == "False"
    assert pod.status.phase == "Running"
    kubelet.set_ready(namespace, "solo", True)
    assert condition(core.read_namespaced_pod("solo", namespace), "Ready") == "True"
    assert not kubelet.errors_in(namespace)


def test_a_graceful_deletion_runs_the_pre_stop_hook_and_lasts_the_grace(
    kubelet: Kubelet, core: kubernetes.client.CoreV1Api, namespace: str, tmp_path: Path
):
    mark = tmp_path / "pre-stop"
    hook = ["sh", "-c", f"echo $(POD_NAME) > {mark}"]
    core.create_namespaced_pod(namespace, pod_body("leaving", grace=3, pre_stop=hook))
    wait_for(lambda: core.read_namespaced_pod("leaving", namespace).status.phase == "Running", 10)

    started = time.monotonic()
    core.delete_namespaced_pod("leaving", namespace)  # the pod's own grace: 3 s
    pod = core.read_namespaced_pod("leaving", namespace)
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 3
    assert condition(pod, "Ready") == "True"  # still serving while it terminates
    wait_for(mark.exists, 3)
    assert mark.read_text().strip() == "leaving"  # $(POD_NAME) from the downward API

    def gone() -> bool:
        try:
            core.read_namespaced_pod("leaving", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, 8)
    # Kept until its deletionTimestamp (whole seconds, so up to 1 s early), then removed at once.
    assert 2.0 <= time.monotonic() - started < 5.0
    [run] = [h for h in kubelet.hooks if h.namespace == namespace]
    assert run.returncode == 0
    assert run.command[-1] == f"echo leaving > {mark}"
    assert not kubelet.errors_in(namespace)
