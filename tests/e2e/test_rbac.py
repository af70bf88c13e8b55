"""The ClusterRole grants exactly the calls the operator makes: nothing missing, nothing spare."""

from __future__ import annotations

from pathlib import Path

import yaml

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.sim import NS, ROUTE, operator
from tests.e2e.test_route_lifecycle import status_of, wait_for_table
from tests.routes import poll_until

RBAC = Path(__file__).parents[2] / "manifests" / "base" / "rbac.yaml"


def granted() -> set[tuple[str, str, str]]:
    (role,) = [d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole"]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def verb(method: str, name: str | None, params: dict[str, str]) -> str:
    if method == "GET":
        return "watch" if params.get("watch") == "true" else "get" if name else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]


async def test_the_cluster_role_matches_the_calls_the_operator_makes(cluster, redis, redis_url, prefix):
    await cluster.start(3, rebind="Eager")
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix):
        await wait_for_table(table, [0, 1, 2])
        async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
            await client.compute_linked_pod(NS, "u", ROUTE)
        await cluster.delete_pod(0)  # evictions post events
        await cluster.annotate(1, "Nonsense")  # a warning event on a pod

        async def settled() -> bool:
            reasons = {e.get("reason") for e in await cluster.events()}
            return {"BadRoutingState"} <= reasons and (await status_of(cluster)).get("summary") == "2/2"

        await poll_until(settled, within=8, every=0.1)
        await cluster.delete_route()  # the finalizer is removed

        async def deleted() -> bool:
            return not (await table.snapshot(NS, ROUTE)).pods

        await poll_until(deleted, within=8, every=0.1)

    made = set()
    for request in cluster.api:
        if request.resource is None or request.resource.plural is None:
            continue  # API discovery, which every authenticated user may do
        if "kopf" not in request.headers.get("User-Agent", ""):
            continue  # the test itself, acting as kubectl and kubelet
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        made.add((request.resource.group, resource, verb(request.method.value, request.name, request.params)))
    assert made == granted()
