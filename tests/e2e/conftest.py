"""Fixtures for end-to-end tests: kmock's Kubernetes emulator and the operator against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stateful_route.testing.sim import Cluster, emulated_cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """An emulated cluster (kmock over HTTP on loopback) with our namespace, CRD and a kubeconfig."""
    async with emulated_cluster(tmp_path) as made:
        yield made
