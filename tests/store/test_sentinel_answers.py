"""Sentinels that disagree on the primary: the answer of the latest failover (the highest config
epoch) wins, whatever the order of the Sentinels in the URL. Two real deployments watch a
service of the same name; one of them has failed over once (tests/conftest.py)."""

from __future__ import annotations

import pytest
from redis.asyncio.sentinel import MasterNotFoundError

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


async def test_sentinels_naming_no_primary_say_why_in_a_short_line(
    stale_and_fresh_sentinels: tuple[SentinelGroup, SentinelGroup],
) -> None:
    never, _ = stale_and_fresh_sentinels
    addresses = [("127.0.0.1", port) for port in never.sentinel_ports]
    sentinels = Sentinels(addresses, {})
    try:
        with pytest.raises(MasterNotFoundError) as raised:
            await sentinels.discover_master("not-monitored")
    finally:
        await sentinels.aclose()
    said = str(raised.value)
    for host, port in addresses:  # each Sentinel by its address, not its client's long repr
        assert f"{host}:{port}: ResponseError: No such master with that name" in said
    assert len(said) < 100 * len(addresses), said
