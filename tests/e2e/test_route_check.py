"""The operator asks the API server whether a route still exists (official client, the
operator's RBAC: list statefulroutes) before claiming a table no route owns."""

from __future__ import annotations

from stateful_route.controller.route_check import route_exists
from stateful_route.testing.sim import NS


async def test_a_route_exists_until_it_is_deleted_and_only_under_its_own_uid(cluster):
    await cluster.start(2)
    uid = (await cluster.route())["metadata"]["uid"]
    kubeconfig = str(cluster.kubeconfig)
    assert await route_exists(NS, uid, kubeconfig) is True
    assert await route_exists(NS, "another-uid", kubeconfig) is False
    await cluster.delete_route()
    assert await route_exists(NS, uid, kubeconfig) is False
