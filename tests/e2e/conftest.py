"""Fixtures for end-to-end tests: kmock's Kubernetes emulator and the operator against it, and the
Go client's replay program."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stateful_route.testing.sim import Cluster, emulated_cluster
from tests.go_replay import build_go_program


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """An emulated cluster (kmock over HTTP on loopback) with our namespace, CRD and a kubeconfig."""
    async with emulated_cluster(tmp_path) as made:
        yield made


@pytest.fixture(scope="session")
def go_replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go client's replay program (tests/go_replay.py), built once (skipped without Go:
    `make test` requires it)."""
    return build_go_program("replay", tmp_path_factory.mktemp("go-replay"))
