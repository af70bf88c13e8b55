"""A pod's own report belongs to the pod instance that made it, never to a later pod written at the
same index (randomized operator scenarios, seeds 3454473594, 280677451, 2291195188: a Shutdown
report made at an index with no pod in the table stuck to the next pod written there, so a fresh
Ready pod was never routable).

The table's ``ids`` name the instance (pod uid) behind each index. A report made without the pod's
uid belongs to whatever instance the table names then: a table write that puts another instance,
or any instance at an index that had no pod, drops it. A report made with the pod's uid
(``ServerDriver(pod_uid=…)``) applies only while the table names that uid; made before the
operator has written that pod, it is kept aside and applied when the operator writes it.
"""

from __future__ import annotations

import pytest

from stateful_route import ClientDriver, InvalidInput, PodState, RouteTable, RoutingState, ServerDriver
from tests.routes import NS, SVC, keys_under


async def write(table: RouteTable, instances: dict[int, str]) -> None:
    """The operator's write: every pod Ready, each index with its pod's uid (seen Ready)."""
    pods = [PodState(i) for i in sorted(instances)]
    await table.put_pods(NS, SVC, pods, instances={i: f"{uid},r" for i, uid in instances.items()})


async def report(redis, prefix: str, index: int, state: RoutingState, pod_uid: str | None = None) -> None:
    uid_option = {} if pod_uid is None else {"pod_uid": pod_uid}
    async with ServerDriver(
        redis, namespace=NS, service=SVC, pod_index=index, prefix=prefix, **uid_option
    ) as server:
        await server.set_routing_state(state)


async def state_of(table: RouteTable, index: int) -> tuple[bool, bool]:
    """(routable, available) of pod ``index``, read in one snapshot."""
    snapshot = await table.snapshot(NS, SVC)
    pod = snapshot.pods[index]
    return pod.routable, index in snapshot.available


async def test_a_shutdown_report_at_an_index_without_a_pod_does_not_stick_to_the_next_pod(redis, prefix):
    """The scenarios' failure, step by step: game-0 is deleted (the operator takes it out of the
    table), a pod driver reports Shutdown for index 0 (nobody there), then the StatefulSet's new
    game-0 is Ready and the operator writes it: it must be routable."""
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "old-0", 1: "uid-1"})
    await write(table, {1: "uid-1"})  # game-0 deleted
    await report(redis, prefix, 0, RoutingState.SHUTDOWN)
    await write(table, {0: "new-0", 1: "uid-1"})  # the new game-0, Ready
    assert await state_of(table, 0) == (True, True)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        assert await client.is_pod_routable(NS, SVC, 0)


async def test_a_gone_instances_report_does_not_reach_its_successor(redis, prefix):
    """The old pod reports (with its uid) after its successor was written: it is not the pod the
    table names, so nothing changes for the successor."""
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "uid-0", 1: "old-1"})
    await write(table, {0: "uid-0", 1: "new-1"})
    await report(redis, prefix, 1, RoutingState.SHUTDOWN, pod_uid="old-1")
    assert await state_of(table, 1) == (True, True)
    await write(table, {0: "uid-0", 1: "new-1"})  # the operator's next tick changes nothing
    assert await state_of(table, 1) == (True, True)


async def test_a_new_pods_report_made_before_the_operator_wrote_it_is_kept_for_it(redis, prefix):
    """A pod that reports (with its uid) before the operator has written it: its report waits and
    applies as soon as the table names it, not before, and not to the pod it replaces."""
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "uid-0", 1: "old-1"})
    await report(redis, prefix, 1, RoutingState.DENY_NEW_CALL, pod_uid="new-1")
    await report(redis, prefix, 2, RoutingState.SHUTDOWN, pod_uid="new-2")  # scale-up, not written yet
    assert await state_of(table, 1) == (True, True)  # old-1 is not the pod that reported
    await write(table, {0: "uid-0", 1: "old-1"})
    assert await state_of(table, 1) == (True, True)
    await write(table, {0: "uid-0", 1: "new-1", 2: "new-2"})
    assert await state_of(table, 1) == (True, False)  # DenyNewCall: its users stay, no new ones
    assert await state_of(table, 2) == (False, False)  # Shutdown
    assert await table.reports(NS, SVC) == {1: RoutingState.DENY_NEW_CALL, 2: RoutingState.SHUTDOWN}
    # Once applied, a report belongs to its pod like any other: the next instance drops it.
    await write(table, {0: "uid-0", 1: "next-1", 2: "new-2"})
    assert await state_of(table, 1) == (True, True)


async def test_an_early_report_keeps_both_load_and_routing_state(redis, prefix):
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "uid-0"})
    async with ServerDriver(
        redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix, pod_uid="p1"
    ) as pod:
        await pod.set_load_state(40)
        await pod.set_routing_state(RoutingState.DENY_NEW_CALL)
        await pod.set_load_state(7)
    await write(table, {0: "uid-0", 1: "p1"})
    snapshot = await table.snapshot(NS, SVC)
    assert snapshot.pods[1].routing is RoutingState.DENY_NEW_CALL
    assert snapshot.pods[1].load == 7


async def test_a_report_of_the_pod_the_table_names_applies_at_once_and_stays(redis, prefix):
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "uid-0", 1: "uid-1"})
    await report(redis, prefix, 1, RoutingState.DENY_NEW_CALL, pod_uid="uid-1")
    assert await state_of(table, 1) == (True, False)
    await write(table, {0: "uid-0", 1: "uid-1"})  # the same instance again: its report stays
    assert await state_of(table, 1) == (True, False)
    await report(redis, prefix, 1, RoutingState.READY, pod_uid="uid-1")
    assert await state_of(table, 1) == (True, True)


async def test_a_report_without_a_uid_keeps_todays_meaning(redis, prefix):
    """Pod drivers of earlier releases, and `stateful-route drain`, send no uid: the report applies
    to the pod the table names, stays while that instance does, and goes with it."""
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "uid-0", 1: "uid-1"})
    await report(redis, prefix, 1, RoutingState.DENY_NEW_CALL)
    assert await state_of(table, 1) == (True, False)
    await write(table, {0: "uid-0", 1: "uid-1"})
    assert await state_of(table, 1) == (True, False)
    await write(table, {0: "uid-0", 1: "next-1"})
    assert await state_of(table, 1) == (True, True)


async def test_a_table_written_without_instances_takes_every_report(redis, prefix):
    """Without the operator (tables written by RouteTable alone, no uids): as before, a report at
    an index the table does not list yet applies once the pod is added, with or without a uid."""
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(0)])
    await report(redis, prefix, 1, RoutingState.DENY_NEW_CALL)
    await table.update_pod(NS, SVC, PodState(1))
    assert await state_of(table, 1) == (True, False)
    await report(redis, prefix, 0, RoutingState.DENY_NEW_CALL, pod_uid="any")
    assert await state_of(table, 0) == (True, False)


async def test_reports_kept_aside_go_with_the_route(redis, prefix):
    table = RouteTable(redis, prefix=prefix)
    await write(table, {0: "uid-0"})
    await report(redis, prefix, 3, RoutingState.SHUTDOWN, pod_uid="early-3")
    route_keys = table.keyring.route(NS, SVC)
    assert await redis.hgetall(route_keys.early_reports) == {b"3": b"early-3,2,0"}
    await table.delete(NS, SVC)
    assert set(await keys_under(redis, prefix)) == {route_keys.version.encode()}  # never goes back


@pytest.mark.parametrize("bad", ["", "a,b", "uid with spaces", "x" * 129, 7, b"uid"])
def test_a_bad_pod_uid_is_refused_before_anything_is_written(redis, prefix, bad):
    with pytest.raises(InvalidInput) as raised:
        ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix, pod_uid=bad)
    assert raised.value.field == "pod_uid"
