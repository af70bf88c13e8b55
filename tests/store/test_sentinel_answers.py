"""Sentinels that disagree on the primary: the answer of the latest failover (the highest config
epoch) wins, whatever the order of the Sentinels in the URL. Two real deployments watch a
service of the same name; one of them has failed over once (tests/conftest.py)."""

from __future__ import annotations

import pytest

from stateful_route.store.sentinels import Sentinels
from stateful_route.testing.sentinel import SentinelGroup

pytestmark = pytest.mark.sentinel


async def test_the_latest_failover_wins(
    stale_and_fresh_sentinels: tuple[SentinelGroup, SentinelGroup],
) -> None:
    never, once = stale_and_fresh_sentinels
    stale, fresh = ("127.0.0.1", never.sentinel_ports[0]), ("127.0.0.1", once.sentinel_ports[0])
    for order in ([stale, fresh], [fresh, stale]):
        sentinels = Sentinels(order, {})
        try:
            assert await sentinels.discover_master(once.service) == ("127.0.0.1", once.primary_port())
        finally:
            await sentinels.aclose()
