"""Connecting to Redis from a URL: one server, or a Redis Cluster when the URL says so.

``redis://[:password@]host:port/db`` (``rediss://`` for TLS, ``?ssl_ca_certs=/path/ca.pem`` for a
private CA) is one server; adding ``cluster=true`` to the query (``redis://host:7000/0?cluster=true``)
connects to a Redis Cluster through that seed node.
``redis+sentinel://[[user]:password@]host:port[,host:port...]/<master-name>[/db]`` (``rediss+sentinel://``
for TLS to the Sentinels and the primary) asks those Sentinels where the primary of ``master-name``
is (all of them at once, see ``sentinels``), and asks again after a failover; the credentials are
the primary's (the Sentinels are reached without them). Every key of one route shares a hash tag,
so every script and pipeline stays in one slot in every case.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from stateful_route.core.errors import InvalidInput
from stateful_route.store.sentinels import Sentinels

__all__ = [
    "AnyRedis",
    "SentinelUrl",
    "check_url",
    "connect",
    "is_cluster_url",
    "is_sentinel_url",
    "parse_sentinel_url",
    "seed_url",
]

AnyRedis: TypeAlias = Redis | RedisCluster

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
_SENTINEL_PORT = 26379


def _split(url: str) -> tuple[str, bool]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flags = [value.lower() for name, value in query if name == "cluster"]
    rest = [(name, value) for name, value in query if name != "cluster"]
    return urlunsplit(parts._replace(query=urlencode(rest))), any(flag in _TRUE for flag in flags)


def seed_url(url: str) -> str:
    """``url`` without the cluster flag: the one server it names (a cluster's seed node)."""
    return _split(url)[0]


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` asks for Redis Cluster (``?cluster=true``)."""
    return _split(url)[1]


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Redis Sentinels (``redis+sentinel://`` or ``rediss+sentinel://``)."""
    return urlsplit(url).scheme.lower() in _SENTINEL_SCHEMES


@dataclass(frozen=True)
class SentinelUrl:
    """What a Sentinel URL names: where the Sentinels are, which primary, and how to connect."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    # Options for connections to the primary: credentials, db, TLS, query (never printed).
    primary: dict[str, Any] = field(repr=False)
    sentinel: dict[str, Any]  # options for connections to the Sentinels: TLS and query, no credentials


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``redis[s]+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master-name>[/db]``;
    a port left out is 26379. Raises InvalidInput (field ``redis_url``) on anything else."""
    parts = urlsplit(url)
    tls = _SENTINEL_SCHEMES.get(parts.scheme.lower())
    if tls is None:
        raise InvalidInput("redis_url", "must start with redis+sentinel:// or rediss+sentinel://")
    credentials, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_sentinel_address(host) for host in hosts.split(","))
    names = parts.path.split("/")[1:]
    if not 1 <= len(names) <= 2 or not names[0]:
        raise InvalidInput(
            "redis_url", "must name the primary: redis+sentinel://host:port/<master-name>[/db]"
        )
    db = names[1] if len(names) == 2 else "0"
    if not db.isdigit():
        raise InvalidInput("redis_url", "the database after the primary's name must be a number")
    auth = f"{credentials}@" if credentials else ""
    # redis-py parses credentials, db and query options exactly as it does for redis:// URLs.
    primary: dict[str, Any] = dict(
        parse_url(f"{'rediss' if tls else 'redis'}://{auth}sentinel/{db}?{parts.query}")
    )
    del primary["host"]
    primary.pop("connection_class", None)
    if tls:
        primary["ssl"] = True  # the Sentinel pool picks its TLS connection class from this flag
    sentinel = {k: v for k, v in primary.items() if k not in ("username", "password", "db")}
    return SentinelUrl(sentinels, unquote(names[0]), primary, sentinel)


def _sentinel_address(host: str) -> tuple[str, int]:
    # The address is not echoed: a password holding '/' ends up here.
    try:
        address = urlsplit(f"//{host}")
        port = address.port or _SENTINEL_PORT
    except ValueError:
        raise InvalidInput("redis_url", f"a Sentinel address is not host[:port]{_ENCODE}") from None
    if not address.hostname:
        raise InvalidInput("redis_url", f"a Sentinel address is not host[:port]{_ENCODE}")
    return address.hostname, port


RECHECK_PRIMARY = 0.5  # seconds between asking the Sentinels where the primary is


class _PrimaryPool(SentinelConnectionPool):
    """Asks the Sentinels where the primary is on a checkout at most every RECHECK_PRIMARY
    seconds, not only when connecting, and when the answer changes closes every connection,
    pub/sub included, so all of them reconnect to the new primary: a primary that comes back
    after Sentinel promoted a replica still acts as one until Sentinel demotes it (about 8 s
    later), and what is written to or read from it meanwhile is lost or stale."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._checked = -math.inf

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._checked >= RECHECK_PRIMARY:
            self._checked = now
            await self.get_master_address()
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def get_master_address(self) -> Any:
        address = await self.sentinel_manager.discover_master(self.service_name)
        if self.master_address != address:
            self.master_address = address
            await self.disconnect(inuse_connections=True)  # in-flight calls fail: StoreUnavailable
        return address


class _SentinelPrimary(Redis):
    """The primary's client; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager: Sentinel = self.connection_pool.sentinel_manager  # type: ignore[attr-defined]
        await manager.aclose()


def _connect_sentinel(url: str, options: dict[str, Any]) -> Redis:
    parsed = parse_sentinel_url(url)
    sockets = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinels(parsed.sentinels, {**parsed.sentinel, **sockets})
    client: Redis = sentinel.master_for(
        parsed.service,
        redis_class=_SentinelPrimary,
        connection_pool_class=_PrimaryPool,
        **{**parsed.primary, **options},
    )
    return client


def check_url(url: str) -> None:
    """Raise InvalidInput (field ``redis_url``) unless ``url`` is a Redis URL this module can
    connect with; no I/O. The message never echoes the URL or a part of it: a password that
    breaks the URL's structure would be what got echoed."""
    _parsed(url, lambda: None)


def connect(url: str, *, queue_at: int | None = None, **options: Any) -> AnyRedis:
    """An asyncio client for ``url``: ``Redis``, ``RedisCluster`` with ``?cluster=true``, or the
    current primary behind Redis Sentinel for ``redis[s]+sentinel://``. A malformed URL raises
    InvalidInput (see ``check_url``); nothing is connected until the first command. Unless
    ``options`` say otherwise, a call on a connection Redis dropped is retried once, at once
    (``_retry_once``). ``queue_at``: on one server, at most that many connections, and callers
    beyond them wait for one (a blocking pool) instead of failing; a cluster client keeps its own
    pool per node, and a Sentinel client its own."""
    return _parsed(url, lambda: _connect(url, queue_at, options))


T = TypeVar("T")

# redis-py's own messages for a malformed URL that name no part of it, and what to say instead
# of those that do.
_BAD_PORT = "the port must be a number from 0 to 65535"
_ENCODE = " (percent-encode '/', '?', '#' and '@' inside a password: %2F %3F %23 %40)"


def _parsed(url: str, then: Callable[[], T]) -> T:
    if not isinstance(url, str):
        raise InvalidInput("redis_url", f"must be a str, got {type(url).__name__}")
    if "@" in _after_authority(url):
        # ``redis://user:2024/x@host``: the password's '/' ended the authority, which then reads
        # as host "user" and port "2024"; a connection error would print both.
        raise InvalidInput("redis_url", "has an '@' after its host" + _ENCODE)
    try:
        flags = [value.lower() for name, value in parse_qsl(urlsplit(url).query) if name == "cluster"]
        if any(flag not in _TRUE | _FALSE for flag in flags):
            raise InvalidInput("redis_url", "cluster must be true or false (1/0, yes/no, on/off)")
        plain, cluster = _split(url)
        if is_sentinel_url(url):
            if cluster:
                raise InvalidInput("redis_url", "cluster=true does not apply to a Sentinel URL")
            parse_sentinel_url(url)
            _check_options(url.lower().startswith("rediss+"), urlsplit(url).query)
        elif not plain.startswith(("redis://", "rediss://")):
            raise InvalidInput(
                "redis_url", "must start with redis://, rediss://, redis+sentinel:// or rediss+sentinel://"
            )
        else:
            parse_url(plain)
            if not re.fullmatch(r"/?|/\d+", urlsplit(plain).path):
                # redis-py reads "/0/1" as db 1 and "/x" as db 0: say so instead of guessing.
                raise InvalidInput("redis_url", "the database after the host must be a number, as in /0")
            if cluster:  # a cluster client takes options of its own: its constructor (no I/O) checks them
                RedisCluster.from_url(plain)
            else:
                _check_options(plain.startswith("rediss://"), urlsplit(plain).query)
        return then()
    except InvalidInput:
        raise
    except TypeError:  # a query option no client takes (its name may be a pasted secret: not echoed)
        raise InvalidInput("redis_url", "has a query option the Redis client does not take") from None
    except ValueError as exc:  # not chained: redis-py's message may quote the URL's parts
        message = str(exc)
        if message.startswith("Invalid value for ") and message.endswith(" in connection URL."):
            raise InvalidInput("redis_url", message.removesuffix(".")) from None
        if message.startswith("Port "):
            raise InvalidInput("redis_url", _BAD_PORT + _ENCODE) from None
        raise InvalidInput("redis_url", "cannot be parsed" + _ENCODE) from None


def _check_options(tls: bool, query: str) -> None:
    """Build (without connecting) the connection the URL's query options describe, so that an
    option no connection takes, or a value it refuses, is bad input now rather than a traceback
    or "Redis unavailable" at the first command. Neither the option's name nor its value is echoed
    unless redis-py's message quotes none of the query: a password may sit there."""
    pool = ConnectionPool.from_url(f"{'rediss' if tls else 'redis'}://localhost/0?{query}")
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        name = str(exc).rpartition("argument ")[2].strip("'")
        if name.startswith("ssl_") and not tls:
            raise InvalidInput("redis_url", f"{name} needs rediss:// or rediss+sentinel://") from None
        raise InvalidInput("redis_url", "has a query option the Redis client does not take") from None
    except RedisError as exc:
        message = str(exc)
        values = [value for _, value in parse_qsl(query, keep_blank_values=True) if value]
        quoted = any(value in message for value in values)
        shown = "an option has a value it refuses" if quoted else message
        raise InvalidInput("redis_url", f"has an invalid query option: {shown}") from None


def _after_authority(url: str) -> str:
    """What follows the URL's authority (path, query, fragment): it begins at the first '/', '?'
    or '#' after ``://``."""
    rest = url.partition("://")[2]
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    return rest[min(ends) :] if ends else ""


def _retry_once() -> Retry:
    """A call that meets a dropped connection (a pooled one Redis closed when it restarted) is
    sent again once, at once, on a fresh connection; a timeout is not retried, so the caller's
    timeout still bounds how long a fault takes to surface."""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _connect(url: str, queue_at: int | None, options: dict[str, Any]) -> AnyRedis:
    plain, cluster = _split(url)
    if not cluster:  # unless ``options`` say otherwise
        options = {"retry": _retry_once(), **options}
    if is_sentinel_url(url):
        return _connect_sentinel(url, options)
    if cluster:
        return RedisCluster.from_url(plain, **options)
    if queue_at is not None:
        return Redis.from_pool(BlockingConnectionPool.from_url(plain, max_connections=queue_at, **options))
    return Redis.from_url(plain, **options)
