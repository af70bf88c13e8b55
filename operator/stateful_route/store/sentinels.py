"""Asking Redis Sentinels where a primary is: all of them at once, each without retries, the whole
round within ASK_WITHIN seconds, so one Sentinel dead or hung costs nothing while the others answer.

redis-py's ``Sentinel.discover_master`` asks them one after another, each with the client's socket
timeouts and retries (10, with backoff, by default). A dead or hung Sentinel first in the list then
takes longer than a call may wait (1 s in a gateway): the call is abandoned before the next Sentinel
is asked, and so is every later one, until that Sentinel is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = ["ASK_WITHIN", "Sentinels"]

# Noted for a Sentinel that answered but named no usable primary: one it calls down, or none
# (just started, it does not monitor the service yet); counted in the error's message.
_NO_PRIMARY = "no usable primary"
ASK_WITHIN = 0.3  # seconds one round of asking the Sentinels may take, well under a call's timeout


class Sentinels(Sentinel):
    """The Sentinels at ``addresses``, reached with ``options`` (TLS, socket options; socket
    timeouts are capped at ASK_WITHIN). ``discover_master`` asks every Sentinel at once and returns
    as soon as a majority named a usable primary, else when all answered or ASK_WITHIN passed; of
    the primaries named, the one of the highest config epoch (the latest failover) wins.
    MasterNotFoundError when none named one."""

    def __init__(self, addresses: Iterable[tuple[str, int]], options: dict[str, Any]) -> None:
        timeouts = {
            name: ASK_WITHIN if options.get(name) is None else min(options[name], ASK_WITHIN)
            for name in ("socket_timeout", "socket_connect_timeout")
        }
        # No retries: the other Sentinels, then the next round, are the retry.
        kwargs = {**options, **timeouts, "retry": Retry(NoBackoff(), 0)}
        super().__init__(list(addresses), sentinel_kwargs=kwargs)
        self._stragglers: set[asyncio.Task[Any]] = set()

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        errors: list[str] = []
        asks = [asyncio.ensure_future(self._ask(each, service_name, errors)) for each in self.sentinels]
        majority = len(asks) // 2 + 1
        primaries: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(ASK_WITHIN):
                for answer in asyncio.as_completed(asks):
                    state = await answer
                    if state is not None:
                        primaries.append(state)
                        if len(primaries) >= majority:
                            break
        except TimeoutError:
            silent = sum(not ask.done() for ask in asks)
            errors.append(f"{silent} Sentinel(s) did not answer within {ASK_WITHIN} s")
        finally:
            for ask in asks:
                if not ask.done():
                    self._let_go(ask)
        if not primaries:
            said = [error for error in errors if error is not _NO_PRIMARY]
            if unusable := errors.count(_NO_PRIMARY):
                said.insert(0, f"{unusable} Sentinel(s) name no usable primary (down, or not yet known)")
            raise MasterNotFoundError(f"No master found for {service_name!r} : {', '.join(said)}")
        latest = max(primaries, key=lambda state: int(state.get("config-epoch", 0)))
        return latest["ip"], latest["port"]

    async def aclose(self) -> None:
        """Wait for asks still running (each ends within its socket timeouts), then close the
        connections to every Sentinel."""
        if self._stragglers:
            await asyncio.wait(self._stragglers)
        await super().aclose()

    def _let_go(self, ask: asyncio.Task[Any]) -> None:
        """Leave an ask no longer needed to end by itself, within its socket timeouts (at most
        ASK_WITHIN each), its answer unused. It is not cancelled: redis-py may swallow a
        cancellation or leave the connection it was opening unclosed."""
        self._stragglers.add(ask)  # a reference until it ends, as asyncio wants for tasks
        ask.add_done_callback(self._stragglers.discard)

    async def _ask(self, sentinel: Redis, service_name: str, errors: list[str]) -> dict[str, Any] | None:
        """What ``sentinel`` says about the primary, or None when it cannot say (dead, too slow,
        does not know the service) or names one that is down."""
        try:
            state = await sentinel.sentinel_master(service_name)
        except RedisError as exc:
            where = sentinel.connection_pool.connection_kwargs  # not the client's repr: half a page
            errors.append(f"{where.get('host')}:{where.get('port')}: {type(exc).__name__}: {exc}")
            return None
        # The typing allows a bool (for the manager's return_responses=False); a client gives the dict.
        if isinstance(state, dict) and self.check_master_state(state, service_name):
            return state
        errors.append(_NO_PRIMARY)
        return None
