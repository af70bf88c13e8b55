"""The real API server's own semantics, which the emulator does not have: the status subresource,
merge patches that drop nulls, optimistic concurrency (409), watches that expire (410 Gone), a
route deleted while the operator is down, and a pod recreated under its name with a new uid."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kubernetes
import pytest
import redis.asyncio as aioredis
from kubernetes.client.exceptions import ApiException

from stateful_route import ClientDriver, RouteTable
from stateful_route.core.constants import GROUP, PLURAL, VERSION
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.sim import operator_thread
from tests.controlplane.conftest import CRD_NAME
from tests.controlplane.test_real_statefulset import ROUTE, STS, Api, until_status, until_table
from tests.routes import poll_until

INCONSISTENT = "Merge-patching finished with inconsistencies"


def route_call(api: Api, method: str, *args: Any) -> Any:
    """A CustomObjectsApi call on the route, off the event loop."""
    call = getattr(api.custom, f"{method}_namespaced_custom_object")
    return asyncio.to_thread(call, GROUP, VERSION, api.namespace, PLURAL, ROUTE, *args)


async def place(redis: aioredis.Redis, prefix: str, namespace: str, count: int) -> dict[str, int]:
    async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
        return {
            f"user-{i}": await client.compute_linked_pod(namespace, f"user-{i}", ROUTE) for i in range(count)
        }


async def route_keys(redis: aioredis.Redis, prefix: str, namespace: str) -> list[bytes]:
    """Every key of the route's table, policy, reports and links (they share its hash tag)."""
    return [key async for key in redis.scan_iter(match=f"{prefix}*{{{namespace}/{ROUTE}}}*", count=1000)]


async def instance(table: RouteTable, namespace: str, pod: int) -> str | None:
    """The uid of the pod the table records under ``pod`` (the value goes on after a comma)."""
    recorded = (await table.instances(namespace, ROUTE)).get(pod)
    return None if recorded is None else recorded.split(",")[0]


async def test_status_is_written_through_the_status_subresource_only(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
):
    with control_plane.api_client() as client:
        crd = kubernetes.client.ApiextensionsV1Api(client).read_custom_resource_definition(CRD_NAME)
    [served] = [v for v in crd.spec.versions if v.name == VERSION]
    assert served.subresources.status == {}  # status is a subresource: the main resource ignores it

    api = Api(control_plane, namespace)
    await api.create_stateful_set(3)
    await api.create_route()
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_status(api, summary="3/3")
        # A status written through the main resource: the server applies the rest of the patch
        # and leaves the status as it was.
        patch = {"metadata": {"labels": {"touched": "yes"}}, "status": {"summary": "0/9", "links": 99}}
        patched = await route_call(api, "patch", patch)
        assert patched["metadata"]["labels"]["touched"] == "yes"
        assert (patched["status"]["summary"], patched["status"]["links"]) == ("3/3", 0)
        # The operator's writes go through the subresource, so they show.
        await place(redis, prefix, namespace, 30)
        await until_status(api, summary="3/3", links=30)
    api.client.close()


async def test_status_writes_log_no_merge_patch_inconsistency(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
):
    """The server drops nulls inside status.pods[] from a merge patch; a status with them made kopf
    warn after every write. Rows of every kind are written here: Ready pods, pods terminating
    (with a deadline) and pods Kubernetes no longer shows."""
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3, grace=3)
    await api.create_route(rebind="Eager")
    caplog.set_level(logging.INFO)
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        await place(redis, prefix, namespace, 30)
        await until_status(api, summary="3/3", links=30)
        await api.scale(1)

        async def terminating_shown() -> bool:
            return any("terminatingUntil" in p for p in (await api.status()).get("pods", []))

        await poll_until(terminating_shown, within=15, every=0.2)
        await until_table(table, namespace, [0], within=60)
        await until_status(api, summary="1/1", links=30, within=20)
    # Before the operator left nulls out, five status writes here each logged one.
    assert [r.getMessage() for r in caplog.records if INCONSISTENT in r.getMessage()] == []
    api.client.close()


async def test_a_concurrent_writer_conflicts_and_the_operator_goes_on(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
):
    """Another writer updates the route with optimistic concurrency (PUT with its resourceVersion)
    while the operator writes status and annotations: the writer gets 409s (the server does refuse
    stale writes), and the operator, which merge-patches without a resourceVersion, follows every
    spec change and keeps its status current."""
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3)
    await api.create_route()
    caplog.set_level(logging.INFO)
    written = 0
    done = asyncio.Event()

    async def writer() -> None:
        """Read, change a label, write back; a 409 (the operator wrote in between) is retried."""
        nonlocal written
        while not done.is_set():
            route = await route_call(api, "get")
            route["metadata"].setdefault("labels", {})["writer"] = str(written)
            try:
                await route_call(api, "replace", route)
            except ApiException as error:
                if error.status != 409:
                    raise
            else:
                written += 1

    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        # One stale write for certain: read, let the operator write (its status), then replace.
        stale = await route_call(api, "get")
        await place(redis, prefix, namespace, 30)
        await until_status(api, links=30)
        with pytest.raises(ApiException) as refused:
            await route_call(api, "replace", stale)
        assert refused.value.status == 409

        writing = asyncio.create_task(writer())
        config = table.keyring.route(namespace, ROUTE).config
        for cap in (100, 200, 300):
            await route_call(api, "patch", {"spec": {"maxLinksPerPod": cap}})

            async def applied(cap: int = cap) -> bool:
                return await redis.hget(config, "cap") == str(cap).encode()

            await poll_until(applied, within=15, every=0.1)
            more = await place(redis, prefix, namespace, 30 + cap // 10)
            await until_status(api, links=len(more))
        done.set()
        await writing
    assert written > 0
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == []
    api.client.close()


async def test_a_watch_that_expires_is_listed_again(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
):
    """The API server restarts: its watch cache begins at etcd's current revision, so the
    operator's watches, resumed from the resourceVersions they had, are answered 410 Gone. kopf
    lists again, and the operator follows the StatefulSet as before."""
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3)
    await api.create_route(rebind="Eager")
    caplog.set_level(logging.DEBUG, logger="kopf")
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        placed = await place(redis, prefix, namespace, 30)
        # Writes elsewhere move etcd's revision past every version the operator has seen.
        for i in range(5):
            await asyncio.to_thread(
                api.core.create_namespaced_config_map, namespace, {"metadata": {"name": f"n{i}"}}
            )
        # In this thread, not a worker's: the new server dies with the thread that started it.
        control_plane.restart_apiserver()

        def restarted() -> list[str]:
            return [r.getMessage() for r in caplog.records if "Restarting the watch-stream" in r.getMessage()]

        async def expired() -> bool:
            return any("pods" in message for message in restarted())

        await poll_until(expired, within=30, every=0.2)  # kopf's answer to 410 Gone
        await api.scale(4)
        await until_table(table, namespace, [0, 1, 2, 3], within=30)
        await api.delete_pod(1)

        on_1 = [uid for uid, pod in placed.items() if pod == 1]

        async def evicted() -> bool:
            events = await asyncio.to_thread(api.core.list_namespaced_event, namespace)
            return any(
                e.reason == "Evicted" and f"evicted {len(on_1)} links from pod 1" in (e.message or "")
                for e in events.items
            )

        await poll_until(evicted, within=30, every=0.2)
        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            linked = await client.batch_get_linked_pod(namespace, on_1, ROUTE)
        assert sum(map(len, linked.values())) == len(on_1)  # rebound (Eager)
        await until_table(table, namespace, [0, 1, 2, 3], within=30)
        await until_status(api, summary="4/4", within=20)
    api.client.close()


async def test_a_route_deleted_while_the_operator_is_down_is_cleaned_up_when_it_returns(
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
    await api.create_stateful_set(2)
    await api.create_route()
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1])
        await place(redis, prefix, namespace, 20)
    assert await route_keys(redis, prefix, namespace)
    await route_call(api, "delete")
    # The operator's finalizer holds the route, deleted, until an operator has cleaned up.
    held = await route_call(api, "get")
    assert held["metadata"]["deletionTimestamp"]
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):

        async def gone() -> bool:
            try:
                await route_call(api, "get")
            except ApiException as error:
                return error.status == 404
            return False

        await poll_until(gone, within=30, every=0.2)
    assert await route_keys(redis, prefix, namespace) == []  # no orphan table, policy or link
    api.client.close()


async def test_a_pod_recreated_under_its_name_while_the_operator_is_down_is_fenced_first(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
):
    """game-1 is deleted (at once) and the controller makes a new game-1, a new uid, while the
    operator is down: on its return the old pod's users are evicted (their state went with it)
    under a fence, then placed again (Eager), and the table names the new uid."""
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3)
    await api.create_route(rebind="Eager")
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        placed = await place(redis, prefix, namespace, 60)
    old_uid = (await api.pods())[1].metadata.uid
    assert await instance(table, namespace, 1) == old_uid
    on_1 = [uid for uid, pod in placed.items() if pod == 1]
    assert on_1
    await asyncio.to_thread(api.core.delete_namespaced_pod, f"{STS}-1", namespace, grace_period_seconds=0)

    async def replaced() -> bool:
        pod = (await api.pods()).get(1)
        return pod is not None and pod.metadata.uid != old_uid and pod.status.phase == "Running"

    await poll_until(replaced, within=30, every=0.1)
    new_uid = (await api.pods())[1].metadata.uid
    async with operator_thread(control_plane, redis_url, prefix, namespaces=[namespace]):

        async def recorded() -> bool:
            return await instance(table, namespace, 1) == new_uid

        await poll_until(recorded, within=30, every=0.1)
        await until_table(table, namespace, [0, 1, 2])
        events = await asyncio.to_thread(api.core.list_namespaced_event, namespace)
        evictions = [e.message or "" for e in events.items if e.reason == "Evicted"]
        assert any(f"evicted {len(on_1)} links from pod 1: replaced" in m for m in evictions), evictions
        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            # Placed again (Eager) once the fence was lifted, anywhere; the others did not move.
            linked = await client.batch_get_linked_pod(namespace, list(placed), ROUTE)
        now = {uid: pod for pod, users in linked.items() for uid in users}
        assert sorted(now) == sorted(placed)
        assert {uid: pod for uid, pod in now.items() if uid not in on_1} == {
            uid: pod for uid, pod in placed.items() if uid not in on_1
        }
    api.client.close()
