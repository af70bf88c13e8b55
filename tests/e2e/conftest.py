"""Fixtures for end-to-end tests: kmock's Kubernetes emulator and the operator against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest

from tests.e2e.cluster import Cluster, NamingEmulator, declare, write_kubeconfig


@pytest.fixture
async def emulator() -> AsyncIterator[NamingEmulator]:
    """kmock's Kubernetes emulator serving HTTP on a free loopback port."""
    async with NamingEmulator() as handler, kmock.Server(handler):
        yield handler


@pytest.fixture
async def cluster(emulator: NamingEmulator, tmp_path: Path) -> Cluster:
    """An emulated cluster with our namespace and CRD, and a kubeconfig pointing at it."""
    declare(emulator)
    made = Cluster(emulator, write_kubeconfig(tmp_path, str(emulator.url).rstrip("/")))
    made.setup()
    return made
