"""Namespaces of a test's own on the shared control plane, whose pods the kubelet stand-in runs."""

from __future__ import annotations

import secrets
import time

import kubernetes
from kubernetes.client.exceptions import ApiException

from stateful_route.testing.kubelet import Kubelet


def create_namespace(core: kubernetes.client.CoreV1Api, kubelet: Kubelet) -> str:
    """A fresh namespace the kubelet stand-in manages, ready for pods (its `default`
    ServiceAccount exists, without which the API server refuses pods)."""
    name = f"t-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name}})
    kubelet.manage(name)
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            return name
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def delete_namespace(core: kubernetes.client.CoreV1Api, name: str) -> None:
    """The namespace controller deletes what is left, in the background; its pods go at once
    (grace 0), so that no preStop hook runs for a test that is over. A terminating namespace
    takes no new pods, so the StatefulSet controller cannot bring them back."""
    core.delete_namespace(name)
    core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
