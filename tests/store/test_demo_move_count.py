"""The demo's count of the rolling update's moves follows each user's link, not the moment the
user happens to look up: a move made before the rolling update is not its own, one made during
it counts even if the user has not looked up since, and a user's departure is not a move."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from stateful_route import ClientDriver, PodState, RoutingState, ServerDriver
from stateful_route.controller.metrics import OperatorMetrics
from stateful_route.demo.checks import conclude
from stateful_route.demo.traffic import FOLLOWED, Traffic
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore
from stateful_route.store.table import RouteTable
from stateful_route.testing.sim import NS, ROUTE
from tests.routes import clients, make_route, until_routable

AT_MOST_ONCE = "the rolling update moved each user at most once"
USER = "user-0"  # the name Traffic gives its first user
LEAVER = "user-1"  # the second: the first stays online (demo.traffic.FOLLOWED)


async def pod_goes(redis: aioredis.Redis, table: RouteTable, gateway: ClientDriver, pod: int) -> None:
    """What the operator does when a pod goes (deleted, or replaced by the rolling update): the
    pod turns unroutable, its users are evicted and rebound at once (``rebind: Eager``)."""
    await table.update_pod(NS, ROUTE, PodState(pod, ready=False))
    await evict(LinkStore(redis, table.keyring), table.keyring.route(NS, ROUTE), pod, reason="deleted",
                rebind_ttl=60)  # fmt: skip
    await until_routable([gateway], pod, False)  # the gateway no longer answers its cached link


async def test_a_move_made_before_the_rolling_update_and_seen_after_it_began_is_not_its_own(redis, prefix):
    # Issue 19 (the demo exited 1 in ~4 runs of 10): a user on the pod the story deletes is rebound
    # and does not look up again until the rolling update has begun; its first answer then shows
    # the deletion's move, and the rolling update's one move made it look moved twice.
    table = await make_route(redis, prefix, pods=3, ns=NS, service=ROUTE)
    async with clients(lambda: redis, prefix, 1, namespace=NS) as gateways:
        traffic = Traffic(gateways, {}, target=1)
        traffic.created = 1
        await traffic.look_up(gateways[0], USER)
        first = traffic.where[USER]
        await pod_goes(redis, table, gateways[0], first)  # the story deletes its pod
        await traffic.rollout_begins()
        await traffic.look_up(gateways[0], USER)  # it sees the deletion's move only now
        second = traffic.where[USER]
        await pod_goes(redis, table, gateways[0], second)  # the rolling update replaces its pod
        await traffic.look_up(gateways[0], USER)
        assert len({first, second, traffic.where[USER]}) == 3
        await conclude(traffic, table, OperatorMetrics())
    assert traffic.moves[USER] == 2  # as its answers show: both moves
    assert traffic.summary.rollout_max_moves == 1, traffic.rollout_moves
    assert traffic.summary.invariants[AT_MOST_ONCE] is True
    assert traffic.summary.ok, traffic.summary.invariants


async def test_a_second_move_in_the_rolling_update_counts_before_the_user_sees_it(redis, prefix):
    # The check can still fail: two moves in the rolling update, the second one not yet seen by
    # the user's lookups when the demo ends (its stored link tells).
    table = await make_route(redis, prefix, pods=3, ns=NS, service=ROUTE)
    async with clients(lambda: redis, prefix, 1, namespace=NS) as gateways:
        traffic = Traffic(gateways, {}, target=1)
        traffic.created = 1
        await traffic.look_up(gateways[0], USER)
        await traffic.rollout_begins()
        await pod_goes(redis, table, gateways[0], traffic.where[USER])
        await traffic.look_up(gateways[0], USER)
        await pod_goes(redis, table, gateways[0], traffic.where[USER])
        await conclude(traffic, table, OperatorMetrics())
    assert traffic.moves[USER] == 1
    assert traffic.summary.rollout_max_moves == 2, traffic.rollout_moves
    assert traffic.summary.invariants[AT_MOST_ONCE] is False


async def test_a_user_who_leaves_while_its_lookup_is_under_way_is_not_counted_as_moved(redis, prefix):
    # Issue 19, the second cause: a user left (its pod dropped its link) while another gateway's
    # lookup of it was under way; that lookup's answer enrolled it again as a new user, its next
    # lookup placed it anew on another pod, and that placement counted as a move.
    table = await make_route(redis, prefix, pods=3, ns=NS, service=ROUTE)
    servers = {
        i: ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=i, prefix=prefix) for i in range(3)
    }
    async with clients(lambda: redis, prefix, 3, namespace=NS) as (gateway, slow, other):
        traffic = Traffic([gateway, slow, other], servers, target=1)
        traffic.created = 2  # user-0 (FOLLOWED) never leaves: user-1 does
        await traffic.look_up(gateway, LEAVER)
        first = traffic.where[LEAVER]
        await traffic.rollout_begins()
        # Its pod takes no new users (outdated in a rolling update): a new placement goes elsewhere.
        await table.update_pod(NS, ROUTE, PodState(first, routing=RoutingState.DENY_NEW_CALL))
        answered, release = asyncio.Event(), asyncio.Event()
        honest = slow.compute_linked_pod

        async def held_up(ns: str, uid: str, service: str) -> int:
            pod = await honest(ns, uid, service)
            answered.set()
            await release.wait()  # the answer is on its way back to the user
            return pod

        slow.compute_linked_pod = held_up  # type: ignore[method-assign]
        lookup = asyncio.create_task(traffic.look_up(slow, LEAVER))
        await answered.wait()
        await traffic.leave(LEAVER)
        release.set()
        await lookup
        if LEAVER in traffic.online:  # as the traffic does: only users online look up again
            await traffic.look_up(other, LEAVER)  # a gateway that has not cached its link
        await traffic.leave(LEAVER)
        assert LEAVER not in traffic.online
        await conclude(traffic, table, OperatorMetrics())
    assert (traffic.moves[LEAVER], traffic.rollout_moves[LEAVER]) == (0, 0)
    assert traffic.summary.users_placed == 1
    assert traffic.summary.ok, traffic.summary.invariants


async def test_the_followed_user_stays_online_for_the_admin_commands(redis, prefix):
    """The demo prints `stateful-route lookup … user-0`: that user never leaves, so the command
    finds its link for the whole run."""
    await make_route(redis, prefix, pods=2, ns=NS, service=ROUTE)
    async with clients(lambda: redis, prefix, 1, namespace=NS) as gateways:
        traffic = Traffic(gateways, {}, target=1)
        traffic.created = 1
        await traffic.look_up(gateways[0], FOLLOWED)
        await traffic.leave(FOLLOWED)
        assert traffic.online == [FOLLOWED]
        assert await gateways[0].get_linked_pod_not_cache(NS, FOLLOWED, ROUTE) == traffic.where[FOLLOWED]
