"""Applying the current CRD over a cluster that holds routes keeps every route, unchanged, and
admits each of them under its storage version (docs/upgrades.md, "The CRD's versions"). The cluster is the
emulator of testing/sim.py (it stores the CRD as `kubectl apply` would; it does no conversion)."""

from __future__ import annotations

import copy

import yaml

from stateful_route.core.constants import GROUP, VERSION
from stateful_route.testing.sim import CRD, Cluster
from tests.unit.test_crd_rules import crd_admits

CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"


async def test_applying_the_crd_again_keeps_every_route(cluster: Cluster):
    await cluster.create_route("room", linkTTLSeconds=60)
    await cluster.create_route("lobby", service="hall", onTermination="Evict")
    await cluster.create_route("room.v2", service="room-v2", maxLinksPerPod=100)
    before = copy.deepcopy(await cluster.routes())
    assert len(before) == 3

    applied = yaml.safe_load(CRD.read_text())
    cluster.api.objects[CRDS, None, applied["metadata"]["name"]] = applied  # kubectl apply of the new CRD

    stored = [v for v in applied["spec"]["versions"] if v.get("storage")]
    assert [v["name"] for v in stored] == [VERSION], (
        "exactly one storage version, the one routes are stored as"
    )
    assert all(v["served"] for v in applied["spec"]["versions"])
    after = await cluster.routes()
    assert after == before
    for route in after:
        assert route["apiVersion"] == f"{GROUP}/{VERSION}"
        assert crd_admits(route["metadata"]["name"], route["spec"]), route["metadata"]["name"]
    assert sorted(route["metadata"]["name"] for route in after) == ["lobby", "room", "room.v2"]
