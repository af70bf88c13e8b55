"""The operator logged in as the manifests' ServiceAccount (a TokenRequest token, as its pod would
mount), not as admin: under the real RBAC of manifests/base every handler it needs here works
(pods and StatefulSets watched, the route patched, its status written, Events posted) and
nothing it asks for is forbidden."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.sim import operator_thread
from tests.controlplane.test_real_statefulset import ROUTE, Api, until_status, until_table

OPERATOR_NAMESPACE = "stateful-route-system"
OPERATOR_ACCOUNT = "stateful-route-operator"


@dataclass(frozen=True)
class Login:
    kubeconfig: Path


async def test_the_operator_works_as_its_service_account_and_nothing_is_forbidden(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
):
    login = Login(control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT))
    # The account really is limited: it may not read Secrets, say, which admin may.
    refused = control_plane.kubectl(
        "get", "secrets", "-n", namespace, kubeconfig=login.kubeconfig, check=False
    )
    assert refused.returncode == 1
    assert "Forbidden" in refused.stderr

    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3)
    await api.create_route(rebind="Eager")
    caplog.set_level(logging.DEBUG)
    async with operator_thread(login, redis_url, prefix, namespaces=[namespace]):
        await until_table(table, namespace, [0, 1, 2])
        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            for i in range(60):
                await client.compute_linked_pod(namespace, f"user-{i}", ROUTE)
            await until_status(api, summary="3/3", links=60)  # the status subresource, patched
            await api.scale(2)
            await until_table(table, namespace, [0, 1], within=60)
            await until_status(api, summary="2/2", links=60)
    described = control_plane.kubectl("describe", "sroute", ROUTE, "-n", namespace).stdout
    assert "Evicted" in described  # an Event the operator created
    # kopf logs a refused call as APIForbiddenError, the official client as "403 Forbidden"; a bare
    # "403" also turns up in the bodies kopf logs at DEBUG (a resourceVersion, a timestamp).
    forbidden = [r.getMessage() for r in caplog.records if "Forbidden" in r.getMessage()]
    assert forbidden == []
    assert not kubelet.errors_in(namespace)
    api.client.close()
