"""HA against the real API server: two operator processes (`stateful-route operator --peering`,
as manifests/ha runs them: all namespaces, the manifests' ServiceAccount with the peering RBAC,
the ClusterKopfPeering of manifests/ha). The active one is killed (SIGKILL: a crash, so it
cannot leave the peering); the standby takes over within the bound docs/operations.md states: the peering
lifetime (`--peering-lifetime`, kopf's 60 s by default; 15 s here) after the crashed replica's
last keep-alive, plus a reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis.asyncio as aioredis
import yaml

from stateful_route import ClientDriver, RouteTable
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.local_redis import free_port
from tests.controlplane.roles import rendered
from tests.controlplane.test_api_semantics import place
from tests.controlplane.test_real_rbac import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE
from tests.controlplane.test_real_statefulset import ROUTE, Api, until_table
from tests.routes import poll_until

PEERING = "stateful-route"
# The replicas' peering lifetime: a crashed replica counts as alive this long after its last
# keep-alive. Short, so that the test waits 15 s for the expiry instead of kopf's default 60.
LIFETIME = 15
RESUME = 5  # then the standby re-lists and reconciles (about 2 s here): the docs' "plus a reconciliation"
PEERING_CRD = "clusterkopfpeerings.kopf.dev"


@pytest.fixture(scope="module")
def peering(control_plane: ControlPlane, installed: Any) -> str:
    """What manifests/ha adds to the base (the peering CRD, the ClusterKopfPeering, the peering
    RBAC); not its Deployment patch, which has no pods to run here."""
    added = [d for d in rendered(control_plane, "ha") if d["kind"] != "Deployment"]
    # The CRD first: the API server knows no ClusterKopfPeering until it is Established.
    crds = [d for d in added if d["kind"] == "CustomResourceDefinition"]
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{PEERING_CRD}", "--timeout=30s")
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(added))
    return PEERING


class Replica:
    """One `stateful-route operator` process, its output in a file."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@contextlib.contextmanager
def replicas(
    control_plane: ControlPlane, folder: Path, redis_url: str, prefix: str, priorities: list[int]
) -> Iterator[list[Replica]]:
    login = control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    program = str(Path(sys.executable).parent / "stateful-route")
    started = []
    try:
        for priority in priorities:
            command = [
                program, "operator", "--all-namespaces", "--peering", PEERING, "--priority", str(priority),
                "--peering-lifetime", str(LIFETIME),
                "--kubeconfig", str(login), "--redis-url", redis_url, "--prefix", prefix,
                "--metrics-port", str(free_port()), "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
            ]  # fmt: skip
            started.append(Replica(command, folder / f"operator-{priority}.log"))
        yield started
    finally:
        for replica in started:
            replica.stop()


def peers(control_plane: ControlPlane) -> dict[str, Any]:
    """The ClusterKopfPeering's status: each live replica's priority and lastseen."""
    with control_plane.api_client() as client:
        found = kubernetes.client.CustomObjectsApi(client).get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", PEERING
        )
    return {peer: entry for peer, entry in (found.get("status") or {}).items() if entry}


@pytest.mark.slow
async def test_the_standby_takes_over_within_the_peering_lifetime_after_the_active_one_is_killed(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    peering: str,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
):
    api = Api(control_plane, namespace)
    table = RouteTable(redis, prefix=prefix)
    await api.create_stateful_set(3)
    await api.create_route(rebind="Eager")
    with replicas(control_plane, tmp_path, redis_url, prefix, [100, 10]) as (active, standby):
        await until_table(table, namespace, [0, 1, 2])

        async def priorities() -> list[int]:
            return sorted(p["priority"] for p in (await asyncio.to_thread(peers, control_plane)).values())

        # kopf starts every replica paused until it has read the peering: the active one says it
        # resumes, the standby says nothing.
        resumed = "Resuming operations after the pause"

        async def one_acts() -> bool:
            return await priorities() == [10, 100] and resumed in active.output()

        await poll_until(one_acts, within=30, every=0.2)

        # A standby that read the peering before the active one joined acts alone for a moment,
        # then pauses in its favour: what matters is that it is paused now.
        async def standby_paused() -> bool:
            out = standby.output()
            return out.rfind(resumed) < out.rfind("Pausing operations") or resumed not in out

        await poll_until(standby_paused, within=30, every=0.2)
        placed = await place(redis, prefix, namespace, 60)
        on_2 = [uid for uid, pod in placed.items() if pod == 2]
        assert on_2

        [last] = [p for p in (await asyncio.to_thread(peers, control_plane)).values() if p["priority"] == 100]
        active.process.kill()  # SIGKILL: no goodbye in the peering, as in a crash
        killed = time.time()
        active.stop()
        # Something only an acting operator does: a scale-down's pod taken out of the table.
        await api.scale(2)
        await until_table(table, namespace, [0, 1], within=LIFETIME + 30)
        took = time.time() - killed
        # The dead replica's entry expires a lifetime after its last keep-alive (before the kill):
        # the standby acts then, not sooner, and a re-list and a reconciliation later.
        expired = datetime.datetime.fromisoformat(last["lastseen"]).timestamp() + LIFETIME
        assert expired - 1 <= killed + took <= expired + RESUME, (killed + took - expired, took)
        assert took <= LIFETIME + RESUME, f"took {took:.1f} s"
        assert resumed in standby.output()
        assert await priorities() == [10]  # the dead one cleaned out of the peering
        async with ClientDriver(redis, namespace=namespace, prefix=prefix) as client:
            moved = await client.batch_get_linked_pod(namespace, on_2, ROUTE)
        assert set(moved) <= {0, 1}  # pod 2's users evicted and rebound by the new active one
        assert sum(map(len, moved.values())) == len(on_2)
        assert standby.process.poll() is None
        assert "Forbidden" not in standby.output()  # kopf logs a refused call as APIForbiddenError
        print(f"takeover: {took:.1f} s after SIGKILL, {killed + took - expired:.1f} s after expiry")
    api.client.close()


async def test_a_namespaced_operator_needs_its_namespaced_kopfpeering(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    peering: str,
    namespace: str,
    redis: aioredis.Redis,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
):
    # With only manifests/ha's ClusterKopfPeering, a --namespace operator would wait forever in
    # silence (kopf meets in a namespaced KopfPeering then): it exits 2 naming what to create.
    login = control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    command = [
        str(Path(sys.executable).parent / "stateful-route"), "operator", "--namespace", namespace,
        "--peering", PEERING, "--kubeconfig", str(login), "--redis-url", redis_url, "--prefix", prefix,
        "--metrics-port", str(free_port()), "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
    ]  # fmt: skip
    refused = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    # The API server checks the login's rights first: without the Role it says forbidden, not missing.
    assert f"cannot read KopfPeering '{PEERING}' in namespace '{namespace}'" in line, line
    assert "manifests/ha-namespaced/" in line

    # manifests/ha-namespaced, in this namespace: the operator starts and acts.
    added = rendered(control_plane, "ha-namespaced")
    crds = [d for d in added if d["kind"] == "CustomResourceDefinition"]
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=30s")
    for doc in added:
        if doc["metadata"].get("namespace") == "games":
            doc["metadata"]["namespace"] = namespace
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(added))
    api = Api(control_plane, namespace)
    await api.create_stateful_set(2)
    await api.create_route()
    replica = Replica(command, tmp_path / "operator.log")
    try:
        await until_table(RouteTable(redis, prefix=prefix), namespace, [0, 1], within=60)
        assert replica.process.poll() is None
        assert "Forbidden" not in replica.output()
    finally:
        replica.stop()
        api.client.close()
