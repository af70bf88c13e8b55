"""The real operator against a real API server and the real StatefulSet controller: pods come
from the controller, the kubelet stand-in runs them, and the operator's route table in Redis and
the StatefulRoute's status follow the StatefulSet as it is created and scaled up and down."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import redis.asyncio as aioredis

from stateful_route import ClientDriver, RouteTable
from stateful_route.core.constants import GROUP, PLURAL, POD_INDEX_LABEL, REVISION_LABEL, VERSION
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.sim import operator_thread
from tests.routes import poll_until

STS = "game"
ROUTE = "room"


def stateful_set(replicas: int, *, grace: int = 1, container: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = {"app": STS}
    server = {"name": "server", "image": "game:1", **(container or {})}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": STS},
        "spec": {"serviceName": STS, "replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"terminationGracePeriodSeconds": grace,
                                       "containers": [server]}}},
    }  # fmt: skip


def handing_off(redis_url: str, prefix: str, timeout: int) -> dict[str, Any]:
    """A container whose preStop hook is the real `stateful-route handoff` of its own pod."""
    index = f"metadata.labels['{POD_INDEX_LABEL}']"
    return {
        "env": [
            {"name": "REDIS_URL", "value": redis_url},
            {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index}}},
        ],
        "lifecycle": {"preStop": {"exec": {"command": [
            "stateful-route", "handoff", "$(NAMESPACE)", ROUTE, "$(POD_INDEX)", "--prefix", prefix,
            "--timeout", str(timeout),
        ]}}},
    }  # fmt: skip


class Api:
    """The calls these tests make, as admin, off the event loop (the gateways share it)."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self.client = control_plane.api_client()
        self.namespace = namespace
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)

    async def create_stateful_set(self, replicas: int, **options: Any) -> None:
        body = stateful_set(replicas, **options)
        await asyncio.to_thread(self.apps.create_namespaced_stateful_set, self.namespace, body)

    async def delete_pod(self, index: int) -> None:
        """`kubectl delete pod game-N`: graceful, with the pod's own terminationGracePeriodSeconds."""
        await asyncio.to_thread(self.core.delete_namespaced_pod, f"{STS}-{index}", self.namespace)

    async def scale(self, replicas: int) -> None:
        patch = {"spec": {"replicas": replicas}}
        await asyncio.to_thread(self.apps.patch_namespaced_stateful_set_scale, STS, self.namespace, patch)

    async def create_route(self, **spec: Any) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "StatefulRoute", "metadata": {"name": ROUTE},
                "spec": {"statefulSetName": STS, **spec}}  # fmt: skip
        await asyncio.to_thread(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, body
        )

    async def status(self) -> dict[str, Any]:
        route = await asyncio.to_thread(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, ROUTE
        )
        return dict(route.get("status") or {})

    async def pods(self) -> dict[int, Any]:
        """The StatefulSet's pods by index (the controller's label), terminating ones included."""
        listed = await asyncio.to_thread(
            self.core.list_namespaced_pod, self.namespace, label_selector=f"app={STS}"
        )
        return {int(p.metadata.labels[POD_INDEX_LABEL]): p for p in listed.items}


async def until_table(table: RouteTable, namespace: str, pods: list[int], within: float = 30) -> None:
    """Until the route table holds exactly ``pods``, each available to new users."""

    async def matches() -> bool:
        snapshot = await table.snapshot(namespace, ROUTE)
        return sorted(snapshot.pods) == pods and sorted(snapshot.available) == pods

    await poll_until(matches, within=within, every=0.05)


async def available_are(table: RouteTable, namespace: str, pods: list[int]) -> bool:
    return sorted((await table.snapshot(namespace, ROUTE)).available) == pods


async def until_status(api: Api, within: float = 15, **expected: Any) -> dict[str, Any]:
    async def matches() -> bool:
        status = await api.status()
        return all(status.get(key) == value for key, value in expected.items())

    await poll_until(matches, within=within, every=0.2)
    return await api.status()


async def test_the_route_follows_a_stateful_set_created_and_scaled_by_the_real_controller(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
):
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    users = [f"user-{i}" for i in range(300)]
    await api.create_stateful_set(3)
    await api.create_route(rebind="Eager")
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        pods = await api.pods()
        assert sorted(pods) == [0, 1, 2]
        assert {p.spec.node_name for p in pods.values()} == {kubelet.node}
        # The controller's own labels: the operator reads each pod's revision from them.
        assert len({p.metadata.labels[REVISION_LABEL] for p in pods.values()}) == 1
        status = await until_status(api, summary="3/3")
        assert [p["name"] for p in status["pods"]] == ["game-0", "game-1", "game-2"]
        assert status["conditions"][0]["status"] == "True"

        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            placed = {uid: await client.compute_linked_pod(namespace, uid, ROUTE) for uid in users}
            assert sorted(set(placed.values())) == [0, 1, 2]
            await until_status(api, links=300)

            await api.scale(5)
            await until_table(table, namespace, [0, 1, 2, 3, 4])
            await until_status(api, summary="5/5")
            # New users go to the new, empty pods.
            newcomers = [await client.compute_linked_pod(namespace, f"new-{i}", ROUTE) for i in range(100)]
            assert set(newcomers) == {3, 4}

            await api.scale(2)
            # A scale-down under way: the pods above the new size take no new users at once.
            await poll_until(lambda: available_are(table, namespace, [0, 1]), within=10, every=0.05)
            await until_table(table, namespace, [0, 1], within=60)
            assert sorted(await api.pods()) == [0, 1]  # the controller removed 4, 3 and 2
            # Eager rebind: every user of the removed pods is already linked to 0 or 1.
            linked = await client.batch_get_linked_pod(
                namespace, [*users, *(f"new-{i}" for i in range(100))], ROUTE
            )
            assert set(linked) == {0, 1}
            assert sum(len(group) for group in linked.values()) == 400
            status = await until_status(api, summary="2/2", links=400)
            assert [p["name"] for p in status["pods"]] == ["game-0", "game-1"]

        shown = control_plane.kubectl("get", "sroute", ROUTE, "-n", namespace, "--no-headers").stdout.split()
        assert shown[:5] == [ROUTE, ROUTE, "2/2", shown[3], "400"]
        # The removed pods' users were evicted (and rebound): the operator's Events on the route.
        described = control_plane.kubectl("describe", "sroute", ROUTE, "-n", namespace).stdout
        assert "Summary:" in described
        assert "2/2" in described
        assert "Evicted" in described
    assert not kubelet.errors_in(namespace)
    api.client.close()


async def test_a_deleted_pod_hands_its_users_off_in_its_pre_stop_hook_and_comes_back(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
):
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    users = [f"user-{i}" for i in range(300)]
    await api.create_stateful_set(3, grace=4, container=handing_off(redis_url, prefix, timeout=3))
    await api.create_route()  # onTermination: Handoff (the default)
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        old_uid = (await api.pods())[1].metadata.uid
        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            placed = {uid: await client.compute_linked_pod(namespace, uid, ROUTE) for uid in users}
            leaving = [uid for uid, pod in placed.items() if pod == 1]
            assert leaving

            await api.delete_pod(1)

            async def handed_off() -> bool:
                return any(h.namespace == namespace for h in kubelet.hooks)

            await poll_until(handed_off, within=10, every=0.1)
            [hook] = [h for h in kubelet.hooks if h.namespace == namespace]
            assert hook.returncode == 0, hook.output
            assert f"handed off {len(leaving)} users from pod 1" in hook.output
            # The hook ran while the pod was still there, terminating: nobody is left on it.
            terminating = (await api.pods())[1]
            assert terminating.metadata.uid == old_uid
            assert terminating.metadata.deletion_timestamp is not None
            moved = await client.batch_get_linked_pod(namespace, leaving, ROUTE)
            assert set(moved) <= {0, 2}
            assert sum(len(group) for group in moved.values()) == len(leaving)

            # The controller creates game-1 again (a new uid) once the old one is gone.
            async def replaced() -> bool:
                pod = (await api.pods()).get(1)
                return pod is not None and pod.metadata.uid != old_uid and pod.status.phase == "Running"

            await poll_until(replaced, within=20, every=0.1)
            await until_table(table, namespace, [0, 1, 2])
            await until_status(api, summary="3/3")
            again = await client.batch_get_linked_pod(namespace, leaving, ROUTE)
            assert again == moved  # handed off once, not moved back
    assert not kubelet.errors_in(namespace)
    api.client.close()


async def test_a_pod_that_stops_being_ready_is_unroutable_until_ready_again(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
):
    """A failing readiness probe, as kubelet reports it through the status subresource."""
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3)
    await api.create_route(unroutableGraceSeconds=0, rebind="Eager")
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            placed = {
                f"user-{i}": await client.compute_linked_pod(namespace, f"user-{i}", ROUTE) for i in range(90)
            }
            on_1 = [uid for uid, pod in placed.items() if pod == 1]

            await asyncio.to_thread(kubelet.set_ready, namespace, f"{STS}-1", False)

            async def unroutable() -> bool:
                snapshot = await table.snapshot(namespace, ROUTE)
                return 1 not in snapshot.routable and sorted(snapshot.routable) == [0, 2]

            await poll_until(unroutable, within=10, every=0.05)
            # Grace 0 and Eager: the operator evicts pod 1's users in batches after the table
            # write, and places them again on 0 and 2 (a lookup meanwhile moves them itself).
            rebound: dict[int, list[str]] = {}

            async def all_rebound() -> bool:
                nonlocal rebound
                rebound = await client.batch_get_linked_pod(namespace, on_1, ROUTE)
                return set(rebound) <= {0, 2} and sum(map(len, rebound.values())) == len(on_1)

            await poll_until(all_rebound, within=10, every=0.05)
            answers = {await client.compute_linked_pod(namespace, uid, ROUTE) for uid in on_1}
            assert answers <= {0, 2}
            status = await until_status(api, summary="2/3")
            assert [p["ready"] for p in status["pods"]] == [True, False, True]

            await asyncio.to_thread(kubelet.set_ready, namespace, f"{STS}-1", True)
            await until_table(table, namespace, [0, 1, 2])
            await until_status(api, summary="3/3")
    assert not kubelet.errors_in(namespace)
    api.client.close()
