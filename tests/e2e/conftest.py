"""Fixtures for end-to-end tests: kmock's Kubernetes emulator and the operator against it."""

from __future__ import annotations

from pathlib import Path

import kmock
import pytest

from tests.e2e.cluster import Cluster, declare, write_kubeconfig


@pytest.fixture
async def cluster(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> Cluster:
    """An emulated cluster with our namespace and CRD, and a kubeconfig pointing at it."""
    declare(kmock)
    server = str(kmock.url).rstrip("/")
    made = Cluster(kmock, write_kubeconfig(tmp_path, server))
    made.setup()
    return made
