"""Shared fixtures: a real Redis (the machine's, or a private one), per-test key prefixes."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import Redis as BlockingRedis

from stateful_route.core.urls import redact_url
from stateful_route.testing.binaries import MissingBinaries, find_binaries
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.local_redis import PrivateCluster, PrivateRedis, Tls, answers
from stateful_route.testing.sentinel import SentinelGroup
from stateful_route.testing.workarounds import plain_traceback_carets

# Operators in threads and the kubernetes client's executor threads log tracebacks while pytest
# formats its own: on CPython 3.11.7 that can crash the run (see plain_traceback_carets).
plain_traceback_carets()

MACHINE_REDIS = "redis://127.0.0.1:6379/0"
E2E = Path(__file__).parent / "e2e"
# Markers that follow from the fixtures a test uses, so `-m "not ..."` never misses one.
MARKED_BY_FIXTURE = {
    "redis_cluster_url": "cluster",
    "tls_files": "tls",
    "private_redis": "e2e",
    "sentinel_group": "sentinel",
    "stale_and_fresh_sentinels": "sentinel",
    "control_plane": "controlplane",
}
# Tests that start servers or processes of their own are outside the fast loop too.
E2E_ALSO = ("cluster", "tls", "sentinel", "slow", "controlplane")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test under tests/e2e and every test that starts servers or processes
    of its own, so ``pytest -m "not e2e"`` is the fast loop: in-process, against one Redis."""
    for item in items:
        for fixture, marker in MARKED_BY_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
        if item.path.is_relative_to(E2E) or any(item.get_closest_marker(m) for m in E2E_ALSO):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL (the run fails if it does not answer), else the machine's Redis, else a private
    redis-server started for this run."""
    named = os.environ.get("REDIS_URL")
    if named is not None and not answers(named):
        pytest.fail(f"REDIS_URL names a Redis that does not answer: {redact_url(named)}")
    url = named or MACHINE_REDIS
    if answers(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.fail(f"no Redis answers at {url} and redis-server is not on PATH")
    server = PrivateRedis().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test or run uses."""
    return f"t{secrets.token_hex(4)}"


RedisFactory = Callable[..., aioredis.Redis]


@pytest.fixture
async def make_redis(redis_url: str, prefix: str) -> AsyncIterator[RedisFactory]:
    """Makes asyncio clients (closed at teardown) and deletes every key under ``prefix`` after."""
    made: list[aioredis.Redis] = []

    def make(url: str | None = None, *, blocking_pool: int = 0, **options: object) -> aioredis.Redis:
        if blocking_pool:  # tasks queue for one of N connections instead of failing
            pool = aioredis.BlockingConnectionPool.from_url(
                url or redis_url, max_connections=blocking_pool, **options
            )
            client = aioredis.Redis.from_pool(pool)
        else:
            client = aioredis.Redis.from_url(url or redis_url, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    cleaner = aioredis.Redis.from_url(redis_url)
    try:
        await delete_prefix(cleaner, prefix)
    finally:
        await cleaner.aclose()
        for client in made:
            await client.aclose()


@pytest.fixture
def redis(make_redis: RedisFactory) -> aioredis.Redis:
    """An asyncio client of the test Redis."""
    return make_redis()


@pytest.fixture
def private_redis() -> Iterator[Callable[..., PrivateRedis]]:
    """Starts private redis-server processes (faults, restarts); all stopped at teardown."""
    servers: list[PrivateRedis] = []

    def start(*extra: str, **options: Any) -> PrivateRedis:
        server = PrivateRedis(*extra, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.cleanup()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    folder: Path = tmp_path_factory.mktemp("tls")
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not on PATH")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "1", "-subj", "/CN=stateful-route test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    return Tls(cert=str(folder / "server.crt"), key=str(folder / "server.key"), ca=str(folder / "ca.crt"))


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A 3-master Redis Cluster on loopback ports, shared by the session (never stopped early)."""
    with cluster_nodes() as cluster:
        yield cluster.url


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A private primary, replica and three Sentinels (down-after 1 s), each test its own."""
    group = SentinelGroup(down_after_ms=1000).start()
    try:
        yield group
    finally:
        group.cleanup()


@pytest.fixture(scope="session")
def stale_and_fresh_sentinels() -> Iterator[tuple[SentinelGroup, SentinelGroup]]:
    """Two deployments watching a service of the same name, shared by the session (tests only
    ask their Sentinels): the second has failed over once, so its Sentinels name its primary with
    a higher config epoch than the first's Sentinels name theirs."""
    never, once = SentinelGroup(), SentinelGroup()
    try:
        never.start()
        once.start()
        old = once.primary_port()
        with BlockingRedis(host="127.0.0.1", port=once.sentinel_ports[0], socket_timeout=5) as sentinel:
            sentinel.sentinel_failover(once.service)
        once.wait_for_new_primary(old)
        yield never, once
    finally:
        never.cleanup()
        once.cleanup()


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    """A 3-master Redis Cluster of this test alone, which it may stop and start again."""
    with cluster_nodes() as cluster:
        yield cluster


@contextlib.contextmanager
def cluster_nodes() -> Iterator[PrivateCluster]:
    if shutil.which("redis-cli") is None or shutil.which("redis-server") is None:
        pytest.fail("redis-server and redis-cli are needed for the Redis Cluster tests")
    cluster = PrivateCluster(3)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real etcd, kube-apiserver and kube-controller-manager, shared by the session (starting
    them takes seconds). Skipped, saying what to run, where `make control-plane` has not built them."""
    try:
        binaries = find_binaries()
    except MissingBinaries as missing:
        pytest.skip(str(missing))
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), binaries) as plane:
        yield plane


@pytest.fixture(scope="session")
def kubelet(control_plane: ControlPlane) -> Iterator[Kubelet]:
    """The kubelet stand-in on the shared control plane: binds and runs the pods of the
    namespaces it is told to manage."""
    with Kubelet(control_plane.kubeconfig) as stand_in:
        yield stand_in
