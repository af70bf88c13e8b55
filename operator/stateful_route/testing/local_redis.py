"""Finding a Redis for the command line: REDIS_URL, the local default, or a private server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import redis
import redis.sentinel

from stateful_route.core.urls import redact_url
from stateful_route.store.connection import is_sentinel_url, parse_sentinel_url, seed_url

__all__ = [
    "DEFAULT_URL",
    "NamedRedisDown",
    "NoRedis",
    "PrivateCluster",
    "PrivateRedis",
    "Tls",
    "answers",
    "free_port",
    "redis_url",
]

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class NoRedis(RuntimeError):
    """Nothing answers and no redis-server can be started."""


class NamedRedisDown(RuntimeError):
    """The Redis the user named (a URL given, or REDIS_URL) does not answer: never replaced by another."""


def answers(url: str) -> bool:
    """Whether a Redis server (a cluster's seed node, a Sentinel URL's primary) answers PING at
    ``url`` within half a second."""
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    try:
        if is_sentinel_url(url):
            return _primary_answers(url, timeouts)
        with redis.Redis.from_url(seed_url(url), **timeouts) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def _primary_answers(url: str, timeouts: dict[str, float]) -> bool:
    parsed = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(parsed.sentinels, sentinel_kwargs={**parsed.sentinel, **timeouts})
    try:
        primary = sentinel.master_for(parsed.service, **{**parsed.primary, **timeouts})
        with primary:
            return bool(primary.ping())
    finally:
        for client in sentinel.sentinels:
            client.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """Files for a TLS-only server: its certificate and key, and the CA clients verify it with."""

    cert: str
    key: str
    ca: str


class PrivateRedis:
    """A redis-server child on a free loopback port that keeps nothing beyond its temp folder;
    optionally requiring a password, or serving TLS only."""

    def __init__(self, *extra: str, password: str | None = None, tls: Tls | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.extra = extra
        self.folder = tempfile.TemporaryDirectory(prefix="stateful-route-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it listens, with the password and CA a client needs."""
        auth = "" if self.password is None else f":{quote(self.password, safe='')}@"
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={quote(self.tls.ca)}"

    def _listen(self) -> list[str]:
        args = ["--port", str(self.port)]
        if self.tls is not None:
            args = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert,
                    "--tls-key-file", self.tls.key, "--tls-ca-cert-file", self.tls.ca,
                    "--tls-auth-clients", "no"]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args

    def command(self) -> list[str]:
        """The redis-server command line that starts it."""
        return ["redis-server", "--bind", "127.0.0.1", *self._listen(), "--save", "",
                "--appendonly", "no", "--dir", self.folder.name, *self.extra]  # fmt: skip

    def start(self) -> PrivateRedis:
        """Start (or restart) it and wait until it answers; raises NoRedis if it does not."""
        if shutil.which("redis-server") is None:
            raise NoRedis("redis-server is not on PATH")
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise NoRedis(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop it; its folder stays until ``cleanup``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """Kill it at once (SIGKILL), as a lost node would vanish."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def cleanup(self) -> None:
        """Stop it and remove its folder."""
        self.stop()
        self.folder.cleanup()


class PrivateCluster:
    """A Redis Cluster of ``masters`` private redis-server nodes (no replicas) on loopback ports.

    Each node keeps its cluster configuration in its own folder, so ``stop`` then ``start``
    brings back the same cluster (same slots), empty, as after a restart of every node.
    """

    def __init__(self, masters: int = 3) -> None:
        # The bus port is set too: by default it is port + 10000, which a high free port cannot have.
        self.nodes = [
            PrivateRedis("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-port", str(free_port()))
            for _ in range(masters)
        ]  # fmt: skip
        self._created = False

    @property
    def url(self) -> str:
        """A URL through the first node as the seed."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    def start(self, timeout: float = 20) -> PrivateCluster:
        """Start every node (creating the cluster the first time) and wait for ``cluster_state:ok``."""
        if shutil.which("redis-cli") is None:
            raise NoRedis("redis-cli is not on PATH")
        for node in self.nodes:
            node.start()
        if not self._created:
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            self._created = True
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                while client.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise NoRedis("the Redis Cluster did not come up")
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop every node (the cluster is down until ``start``)."""
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        """Stop every node and remove their folders."""
        for node in self.nodes:
            node.cleanup()


@contextlib.contextmanager
def redis_url(named: str | None) -> Iterator[str]:
    """Yield the Redis to use. A ``named`` URL is used as it is: NamedRedisDown if it does not answer
    (a user who names a Redis means that one). With none named, the local default if it answers; else a
    private redis-server (removed on exit) if one can be started; else NoRedis saying in one line
    how to get one."""
    if named is not None:
        if not answers(named):
            raise NamedRedisDown(f"no Redis answers at {redact_url(named)}")
        yield named
        return
    url = DEFAULT_URL
    if answers(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        raise NoRedis(
            f"no Redis answers at {redact_url(url)}; set REDIS_URL, or install redis-server "
            "(e.g. `apt-get install redis-server`) and it will be started for you"
        )
    server = PrivateRedis().start()
    try:
        yield server.url
    finally:
        server.cleanup()
