"""Sentinels that disagree on the primary: the answer of the latest failover (the highest config
epoch) wins, whatever the order of the Sentinels in the URL. Two real deployments watch a
service of the same name; one of them has failed over once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from stateful_route.store.sentinels import Sentinels
from stateful_route.testing.sentinel import SentinelGroup

pytestmark = pytest.mark.sentinel


@pytest.fixture
def groups() -> Iterator[tuple[SentinelGroup, SentinelGroup]]:
    never, once = SentinelGroup(), SentinelGroup()
    try:
        never.start()
        once.start()
        old = once.primary_port()
        with redis.Redis(port=once.sentinel_ports[0], socket_timeout=5) as sentinel:
            sentinel.sentinel_failover(once.service)
        once.wait_for_new_primary(old)
        yield never, once
    finally:
        never.cleanup()
        once.cleanup()


async def test_the_latest_failover_wins(groups):
    never, once = groups
    stale, fresh = ("127.0.0.1", never.sentinel_ports[0]), ("127.0.0.1", once.sentinel_ports[0])
    for order in ([stale, fresh], [fresh, stale]):
        sentinels = Sentinels(order, {})
        try:
            assert await sentinels.discover_master(once.service) == ("127.0.0.1", once.primary_port())
        finally:
            await sentinels.aclose()
