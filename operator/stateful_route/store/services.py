"""The set of services with links or a route table in a namespace (for ``get_link_service``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stateful_route.core.state import ServiceId
from stateful_route.store.connection import AnyRedis
from stateful_route.store.faults import guarded
from stateful_route.store.keys import Keyring, RouteKeys, services_key, services_pattern
from stateful_route.store.replies import text

__all__ = ["ServiceSet"]


class ServiceSet:
    """Adds, removes and lists the services of a namespace (``<prefix>:ns:<ns>:services``).

    The set lives in another hash slot than any route, so it is written on its own, outside the
    scripts. Each instance remembers what it added (SADD is idempotent, the memo saves round
    trips) until told that Redis may have lost it (``forget``, ``add(..., again=True)``): a Redis
    restarted empty must get its set back, or ``get_link_service`` finds nothing.
    """

    def __init__(
        self,
        redis: AnyRedis,
        keyring: Keyring,
        timeout: float,
        guard: Callable[[Awaitable[Any], float], Awaitable[Any]] = guarded,
    ) -> None:
        self._redis = redis
        self._keyring = keyring
        self._timeout = timeout
        self._guard = guard
        self._added: set[ServiceId] = set()

    async def add(self, route_keys: RouteKeys, *, again: bool = False) -> bool:
        """Record that ``route_keys.service`` is used in its namespace (once per instance, unless
        ``again``: the caller has just seen Redis without it, e.g. a table it had to rewrite).
        Returns whether this call added it (it was not in the set)."""
        service: ServiceId = (route_keys.namespace, route_keys.service)
        added = False
        if again or service not in self._added:
            added = bool(
                await self._guard(
                    self._redis.sadd(self._keyring.services(route_keys.namespace), route_keys.service),
                    self._timeout,
                )
            )
            self._added.add(service)
        return added

    def forget(self) -> None:
        """Forget what was added (after a reconnect: Redis may have restarted empty)."""
        self._added.clear()

    async def discard(self, namespace: str, service: str) -> None:
        """Forget a service (its route was deleted)."""
        await self._guard(self._redis.srem(self._keyring.services(namespace), service), self._timeout)
        self._added.discard((namespace, service))

    async def namespaces(self) -> list[str]:
        """Every namespace that has a set, sorted (a SCAN of the whole keyspace: for rare use)."""
        pattern = services_pattern(self._keyring.prefix)
        # "<prefix>:ns:<namespace>:services": the namespace is what lies between.
        before, after = services_key(self._keyring.prefix, "\0").split("\0")

        async def scan() -> list[str]:
            found = [text(k) async for k in self._redis.scan_iter(match=pattern, count=1000)]
            return [k[len(before) : len(k) - len(after)] for k in found]

        return sorted(set(await self._guard(scan(), self._timeout * 60)))

    async def members(self, namespace: str) -> list[str]:
        """The services of ``namespace``, sorted."""
        found = await self._guard(self._redis.smembers(self._keyring.services(namespace)), self._timeout)
        return sorted(text(s) for s in found)
