"""Fixtures for the tests against a real control plane: the manifests installed once, and a
namespace of each test's own whose pods the kubelet stand-in runs."""

from __future__ import annotations

import gc
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from tests.controlplane.namespaces import create_namespace, delete_namespace

ROOT = Path(__file__).parents[2]
CRD_NAME = "statefulroutes.stateful-route.dev"


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> subprocess.CompletedProcess[str]:
    """`kubectl apply -k manifests/base` (the CRD, RBAC, the operator's Deployment), once, and the
    CRD Established; returns what the apply printed."""
    applied = control_plane.kubectl("apply", "-k", str(ROOT / "manifests" / "base"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    return applied


@pytest.fixture
def core(control_plane: ControlPlane) -> Iterator[kubernetes.client.CoreV1Api]:
    with control_plane.api_client() as client:
        yield kubernetes.client.CoreV1Api(client)


@pytest.fixture
def namespace(
    control_plane: ControlPlane, kubelet: Kubelet, core: kubernetes.client.CoreV1Api
) -> Iterator[str]:
    """A fresh namespace the kubelet stand-in manages, ready for pods; deleted afterwards."""
    name = create_namespace(core, kubelet)
    yield name
    delete_namespace(core, name)


# The official kubernetes client leaves urllib3's sockets to the test API server for the garbage
# collector. Collected here, at the end of each of these tests, their warnings are ignored (the
# filter below): they are about the test harness's clients, not about the operator, and would
# otherwise fail whichever later test the collector happened to run in. About one run in ten on a
# loaded machine also leaves an asyncio socket transport unclosed (seen three times, in three
# different tests, never on the emulator, and never at the end of an operator thread's loop, which
# was checked for open transports over dozens of stops); its warning is ignored here too.
@pytest.fixture(autouse=True)
def _collect_kubernetes_sockets() -> Iterator[None]:
    yield
    gc.collect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            for leftover in ("<socket.socket", "<function _SelectorTransport.__del__"):
                item.add_marker(
                    pytest.mark.filterwarnings(
                        f"ignore:Exception ignored in. {leftover}:pytest.PytestUnraisableExceptionWarning"
                    )
                )
