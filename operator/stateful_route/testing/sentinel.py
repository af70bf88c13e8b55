"""A private Redis Sentinel deployment for tests and the chaos run: a primary, replicas and
Sentinels, each a redis-server child on a free loopback port with its own folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis

from stateful_route.testing.local_redis import NoRedis, PrivateRedis, Tls, free_port

__all__ = ["SentinelGroup"]


class SentinelGroup:
    """``replicas`` replicas of one primary, watched by ``sentinels`` Sentinels that agree on a
    failure with a quorum of two and call the primary down after ``down_after_ms``; the data
    servers require ``password`` when one is given (the Sentinels do not), and keep an
    append-only file when ``persistent`` (so a restarted server comes back with its data). With
    ``tls`` every server, Sentinels included, serves TLS only, and replicates over it."""

    def __init__(
        self,
        service: str = "stateful-route",
        *,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        password: str | None = None,
        persistent: bool = False,
        tls: Tls | None = None,
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.password = password
        self.tls = tls
        # Every data server's options; replicas log in to the primary with the password.
        self.options: tuple[str, ...] = () if password is None else ("--masterauth", password)
        if persistent:
            self.options += ("--appendonly", "yes")
        if tls is not None:
            self.options += ("--tls-replication", "yes")
        self.data = [PrivateRedis(*self.options, password=password, tls=tls)]
        self.data += [
            PrivateRedis(*self.options, *self._replica_of(self.data[0].port), password=password, tls=tls)
            for _ in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[PrivateRedis] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://`` naming every Sentinel and the service."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        auth = "" if self.password is None else f":{quote(self.password, safe='')}@"
        if self.tls is None:
            return f"redis+sentinel://{auth}{hosts}/{self.service}/0"
        return f"rediss+sentinel://{auth}{hosts}/{self.service}/0?ssl_ca_certs={quote(self.tls.ca)}"

    def start(self) -> SentinelGroup:
        """Start every server, then wait until each Sentinel sees the replicas and its peers."""
        for server in self.data:
            server.start()
        self.wait_synced([server.port for server in self.data[1:]])
        self.start_sentinels()
        self._wait(self._settled, "sentinel discovery")
        return self

    def start_sentinels(self) -> SentinelGroup:
        """Start only the Sentinels, each monitoring the primary's port, and return at once:
        nothing waits for the data servers (which ``start`` starts) or for the Sentinels to
        find each other, as right after a whole deployment is started."""
        for port in self.sentinel_ports:
            sentinel = _SentinelServer(
                port, self.data[0].port, self.service, self.down_after_ms, self.password, self.tls
            )
            self.sentinels.append(sentinel.start())
        return self

    def primary_port(self) -> int:
        """The port the Sentinels name as the primary now."""
        with self._client(self.sentinel_ports[0]) as client:
            _host, port = client.sentinel_get_master_addr_by_name(self.service)
        return int(port)

    def server(self, port: int) -> PrivateRedis:
        """The data server listening on ``port``."""
        (found,) = [server for server in self.data if server.port == port]
        return found

    def restart(self, port: int) -> None:
        """Stop the data server on ``port`` cleanly and start it again in the role the Sentinels
        give it now (a primary, or a replica of the current primary); return once every replica
        has synchronised again."""
        primary = self.primary_port()
        server = self.server(port)
        server.stop()
        server.extra = (*self.options, *(() if port == primary else self._replica_of(primary)))
        server.start()
        self.wait_synced([s.port for s in self.data if s.port != primary])

    def wait_synced(self, replicas: list[int]) -> None:
        """Block until each replica's link to its primary is up and no full sync is under way."""

        def synced(port: int) -> bool:
            info = self._info(port)
            return info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == 0

        self._wait(lambda: all(synced(port) for port in replicas), "replication")

    def fail_primary(self) -> tuple[int, int]:
        """Kill the primary (SIGKILL, as a lost node), wait for the Sentinels to promote a
        replica, then bring the old one back as a replica of the new: (old, new) ports."""
        old = self.primary_port()
        self.server(old).kill()
        new = self.wait_for_new_primary(old)
        self.restart(old)
        return old, new

    def wait_for_new_primary(self, old: int, within: float = 30) -> int:
        """Block until every Sentinel names a primary other than ``old`` and it answers as one."""

        def promoted() -> bool:
            ports = set()
            for port in self.sentinel_ports:
                with self._client(port) as client:
                    ports.add(int(client.sentinel_get_master_addr_by_name(self.service)[1]))
            (new,) = ports if len(ports) == 1 else (old,)
            return new != old and self._info(new).get("role") == "master"

        self._wait(promoted, "failover", within)
        return self.primary_port()

    def cleanup(self) -> None:
        """Stop every server and remove their folders."""
        for server in [*self.sentinels, *self.data]:
            server.cleanup()

    def _client(self, port: int, password: str | None = None) -> redis.Redis:
        """A client of the server (or Sentinel) on ``port``, over TLS when the group uses it."""
        return redis.Redis(
            host="127.0.0.1",  # the name the test certificate holds
            port=port,
            password=password,
            socket_timeout=1,
            decode_responses=True,
            ssl=self.tls is not None,
            ssl_ca_certs=None if self.tls is None else self.tls.ca,
        )

    @staticmethod
    def _replica_of(port: int) -> tuple[str, ...]:
        return ("--replicaof", "127.0.0.1", str(port))

    def _settled(self) -> bool:
        for port in self.sentinel_ports:
            with self._client(port) as client:
                state = client.sentinel_master(self.service)
            if (
                state["num-slaves"] < len(self.data) - 1
                or state["num-other-sentinels"] < len(self.sentinel_ports) - 1
            ):
                return False
        return True

    def _info(self, port: int) -> dict[str, object]:
        try:
            with self._client(port, password=self.password) as client:
                return dict(client.info("replication"))
        except (redis.RedisError, OSError):
            return {}

    @staticmethod
    def _wait(condition: Callable[[], bool], what: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError):
                pass  # a server still starting, or the one just killed
            if time.monotonic() > deadline:
                raise NoRedis(f"{what} did not complete within {within} s")
            time.sleep(0.05)


class _SentinelServer(PrivateRedis):
    """``redis-server FILE --sentinel``: Sentinel rewrites its config file, so it lives in the folder."""

    def __init__(
        self,
        port: int,
        primary: int,
        service: str,
        down_after_ms: int,
        password: str | None,
        tls: Tls | None = None,
    ) -> None:
        super().__init__(tls=tls)
        self.port = port
        config = Path(self.folder.name) / "sentinel.conf"
        listen = f"port {port}\n"
        if tls is not None:  # TLS only, to clients, the data servers and the other Sentinels
            listen = (
                f"port 0\ntls-port {port}\ntls-cert-file {tls.cert}\ntls-key-file {tls.key}\n"
                f"tls-ca-cert-file {tls.ca}\ntls-auth-clients no\ntls-replication yes\n"
            )
        config.write_text(
            f"{listen}bind 127.0.0.1\ndir {self.folder.name}\n"
            f"sentinel monitor {service} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {max(10 * down_after_ms, 5000)}\n"
            + ("" if password is None else f"sentinel auth-pass {service} {password}\n")
        )
        self.config = str(config)

    def command(self) -> list[str]:
        return ["redis-server", self.config, "--sentinel"]
