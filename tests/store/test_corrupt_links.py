"""A link value that does not parse never stalls an eviction, a hand-off or a batch: it is deleted
(eviction, hand-off) or skipped (batch lookup), and logged (issue 11, point 11)."""

from __future__ import annotations

import logging

import pytest

from stateful_route import ClientDriver, PodState, ServerDriver
from stateful_route.store import keys
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore
from stateful_route.testing.shards import check_pod
from tests.routes import NS, SVC, make_route


@pytest.mark.parametrize("value", ["garbage", "", "-1", "1x", "1pp", "１"])
async def test_a_corrupt_link_does_not_stall_eviction(redis, prefix, caplog, value):
    table = await make_route(redis, prefix, pods=2)
    k = keys.Keyring(prefix).route(NS, SVC)
    async with ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix) as pod1:
        for i in range(5):
            await pod1.set_linked_pod(f"u{i}")
        await pod1.set_linked_pod("bad")
    await redis.set(k.link("bad"), value)  # written by something else: not a link
    await table.update_pod(NS, SVC, PodState(1, ready=False))
    store = LinkStore(redis, keys.Keyring(prefix))
    with caplog.at_level(logging.WARNING, logger="stateful_route.store.links"):
        eviction = await evict(store, k, 1, reason="test", rebind_ttl=60, batch=2)
    assert eviction.removed == 5
    assert eviction.rebound == 5
    assert await redis.exists(k.link("bad")) == 0
    assert (await check_pod(redis, k, 1)).entries == {}
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()] == [
        f"event=corrupt_link_deleted namespace={NS} service={SVC} pod=1 uid='bad'"
    ]


async def test_a_corrupt_link_is_skipped_by_a_batch_lookup(redis, prefix, caplog):
    await make_route(redis, prefix, pods=2)
    k = keys.Keyring(prefix).route(NS, SVC)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert await client.set_linked_pod_if_absent(NS, "good", SVC, 0) == 0
        await redis.set(k.link("bad"), "garbage")
        with caplog.at_level(logging.WARNING, logger="stateful_route.store.links"):
            assert await client.batch_get_linked_pod(NS, ["good", "bad", "none"], SVC) == {0: ["good"]}
    assert any("event=corrupt_link_skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", ["garbage", "", "1x", "１"])
async def test_compute_replaces_a_corrupt_link_by_a_placement(redis, prefix, caplog, value):
    """A value that is not a link (in no pod's set, so no eviction ever deletes it) must not make
    the user's every lookup fail: compute places the user, replacing it, and logs it."""
    await make_route(redis, prefix, pods=2)
    k = keys.Keyring(prefix).route(NS, SVC)
    await redis.set(k.link("bad"), value)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        with caplog.at_level(logging.WARNING, logger="stateful_route.store.links"):
            pod = await client.compute_linked_pod(NS, "bad", SVC)
        assert await client.get_linked_pod_not_cache(NS, "bad", SVC) == pod
    assert "bad" in (await check_pod(redis, k, pod)).entries
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()] == [
        f"event=corrupt_link_replaced namespace={NS} service={SVC} uid='bad' pod={pod}"
    ]


async def test_get_link_service_skips_a_corrupt_link(redis, prefix, caplog):
    await make_route(redis, prefix, pods=2)
    await make_route(redis, prefix, pods=2, service="lobby")
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert await client.set_linked_pod_if_absent(NS, "u", "lobby", 1) == 1
        await redis.set(keys.Keyring(prefix).route(NS, SVC).link("u"), "garbage")
        with caplog.at_level(logging.WARNING, logger="stateful_route.store.links"):
            assert await client.get_link_service(NS, "u") == {"lobby": 1}
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()] == [
        f"event=corrupt_link_skipped namespace={NS} service={SVC} uid='u' value=b'garbage'"
    ]


async def test_a_key_of_another_type_is_as_corrupt_as_an_unparsable_value(redis, prefix, caplog):
    await make_route(redis, prefix, pods=2)
    await make_route(redis, prefix, pods=2, service="lobby")
    k = keys.Keyring(prefix).route(NS, SVC)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert await client.set_linked_pod_if_absent(NS, "u", "lobby", 1) == 1
        await redis.hset(k.link("u"), "x", "1")
        with caplog.at_level(logging.WARNING, logger="stateful_route.store.links"):
            assert await client.get_link_service(NS, "u") == {"lobby": 1}
            pod = await client.compute_linked_pod(NS, "u", SVC)
        assert await client.get_link_service(NS, "u") == {"lobby": 1, SVC: pod}
    events = [r.getMessage().split()[0] for r in caplog.records if "corrupt" in r.getMessage()]
    assert events == ["event=corrupt_link_skipped", "event=corrupt_link_replaced"]


@pytest.mark.parametrize("kind", ["value", "type"])
async def test_a_corrupt_link_does_not_stall_a_pods_hand_off(redis, prefix, caplog, kind):
    """Outside review: one corrupt link made ``hand_off_all`` (and the preStop command) fail as a
    Redis error, and stay in the pod's set."""
    await make_route(redis, prefix, pods=2)
    k = keys.Keyring(prefix).route(NS, SVC)
    async with ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix) as pod0:
        for i in range(20):
            await pod0.set_linked_pod(f"u{i}")
        await redis.delete(k.link("u0"))
        if kind == "value":
            await redis.set(k.link("u0"), "garbage")
        else:
            await redis.hset(k.link("u0"), "x", "1")
        with caplog.at_level(logging.WARNING, logger="stateful_route.store.links"):
            result = await pod0.hand_off_all(within=5)
    assert (result.moved, result.failed, result.left) == (19, 0, 0)
    assert await redis.exists(k.link("u0")) == 0
    assert (await check_pod(redis, k, 0)).entries == {}
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()] == [
        f"event=corrupt_link_deleted namespace={NS} service={SVC} pod=0 uid='u0'"
    ]
