"""Rollout-aware placement: pods a rolling update (or a scale-down) will replace keep their users
but take no new ones while a pod that stays takes new users."""

from __future__ import annotations

from stateful_route import ClientDriver, RouteTable, RoutingState, ServerDriver
from stateful_route.store import changes, keys
from stateful_route.testing.sim import NS, ROUTE, Cluster, operator
from tests.e2e.test_route_lifecycle import running_route, status_of, wait_for_table
from tests.routes import poll_until


async def place(client: ClientDriver, tag: str, count: int = 30) -> dict[str, int]:
    return {f"{tag}-{i}": await client.compute_linked_pod(NS, f"{tag}-{i}", ROUTE) for i in range(count)}


async def outdated_in_status(cluster: Cluster, expected: list[int]) -> None:
    async def shown() -> bool:
        status = await status_of(cluster)
        return status.get("outdatedPods") == expected and all(
            p["outdated"] == (p["index"] in expected) for p in status["pods"]
        )

    await poll_until(shown, within=5, every=0.1)


async def test_outdated_pods_take_no_new_users_during_a_rollout_and_do_again_after(
    cluster, redis, redis_url, prefix
):
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, client):
        early = await place(client, "early")

        # Every pod is outdated and none is updated yet: they all still take new users.
        await cluster.start_rollout("rev-2")
        await outdated_in_status(cluster, [0, 1, 2])
        assert sorted((await table.snapshot(NS, ROUTE)).available) == [0, 1, 2]
        assert set((await place(client, "all-outdated")).values()) == {0, 1, 2}

        # Pod 2 runs the new revision: new users go there only; the others keep their users.
        await cluster.replace_pod(2, grace=1, exit_after=0.1, start_after=0.2)
        await wait_for_table(table, [2])
        await outdated_in_status(cluster, [0, 1])
        assert set((await place(client, "during")).values()) == {2}
        kept = {uid: pod for uid, pod in early.items() if pod != 2}
        assert {uid: await client.compute_linked_pod(NS, uid, ROUTE) for uid in kept} == kept

        # The rollout completes: every pod takes new users again.
        await cluster.replace_pod(1, grace=1, exit_after=0.1, start_after=0.2)
        await cluster.replace_pod(0, grace=1, exit_after=0.1, start_after=0.2)
        await cluster.patch_stateful_set({"status": {"currentRevision": "rev-2"}})
        await wait_for_table(table, [0, 1, 2])
        await outdated_in_status(cluster, [])
        best = (await table.snapshot(NS, ROUTE)).best
        assert await client.compute_linked_pod(NS, "after", ROUTE) == best


async def test_users_of_the_first_replaced_pod_wait_for_the_new_revision_not_an_outdated_pod(
    cluster, redis, redis_url, prefix
):
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (_, client):
        early = await place(client, "early", 60)
        on_2 = sorted(uid for uid, pod in early.items() if pod == 2)
        await cluster.start_rollout("rev-2")
        # No pod runs rev-2 while pod 2 is replaced: its evicted users are not rebound onto pods
        # 0 and 1, which the rollout replaces next, but onto the new pod 2 once it is Ready.
        await cluster.replace_pod(2, grace=1, exit_after=0.1, start_after=1.0)

        async def rebound_to_new_pod() -> bool:
            grouped = await client.batch_get_linked_pod(NS, on_2, ROUTE)
            return sorted(grouped.get(2, [])) == on_2

        await poll_until(rebound_to_new_pod, within=5, every=0.1)
        others = {uid: pod for uid, pod in early.items() if pod != 2}
        assert {uid: await client.compute_linked_pod(NS, uid, ROUTE) for uid in others} == others


async def test_a_partition_is_honoured(cluster, redis, redis_url, prefix):
    async with running_route(cluster, redis, redis_url, prefix, 4) as (table, client):
        await cluster.start_rollout("rev-2", partition=2)
        await cluster.replace_pod(3, grace=1, exit_after=0.1, start_after=0.2)
        # Pods below the partition stay on the old revision and are not outdated.
        await wait_for_table(table, [0, 1, 3])
        await outdated_in_status(cluster, [2])
        assert set((await place(client, "new", 40)).values()) == {0, 1, 3}


async def test_an_all_outdated_stateful_set_still_places_users(cluster, redis, redis_url, prefix):
    async with running_route(cluster, redis, redis_url, prefix, 3) as (table, client):
        await cluster.start_rollout("rev-2")
        await outdated_in_status(cluster, [0, 1, 2])
        # Even with pod 2 drained by its own annotation, the outdated pods are not held back.
        await cluster.annotate(2, "DenyNewCall")
        await wait_for_table(table, [0, 1])
        assert set((await place(client, "u")).values()) == {0, 1}


async def test_scale_down_pods_take_no_new_users(cluster, redis, redis_url, prefix):
    async with running_route(cluster, redis, redis_url, prefix, 4) as (table, client):
        early = await place(client, "early", 40)
        await cluster.patch_stateful_set({"spec": {"replicas": 2}})  # the pods are not removed yet
        await wait_for_table(table, [0, 1])
        await outdated_in_status(cluster, [2, 3])
        assert set((await place(client, "late", 40)).values()) == {0, 1}
        assert {uid: await client.compute_linked_pod(NS, uid, ROUTE) for uid in early} == early


async def test_a_pod_replaced_under_its_name_loses_the_old_ones_users_and_shutdown(
    cluster, redis, redis_url, prefix
):
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, client):
        early = await place(client, "early", 30)
        on_2 = sorted(uid for uid, pod in early.items() if pod == 2)
        # The old pod reports Shutdown as it leaves (hand_off_all ends so); its replacement
        # appears at once, possibly before the operator hears that the old one went.
        await ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=2, prefix=prefix).set_routing_state(
            RoutingState.SHUTDOWN
        )
        await cluster.delete_pod(2)
        await cluster.create_pod(2)
        await wait_for_table(table, [0, 1, 2])  # the new pod 2 is not held by the old one's report

        async def evicted() -> bool:
            last = (await status_of(cluster)).get("lastEviction") or {}
            return last.get("pod") == 2 and last.get("links") == len(on_2)

        await poll_until(evicted, within=5, every=0.1)
        # Eager: each was rebound (onto 0 or 1 while the old pod was unroutable, or onto the new
        # pod 2 once its index was no longer fenced), none lost.
        grouped = await client.batch_get_linked_pod(NS, on_2, ROUTE)
        assert sorted(uid for uids in grouped.values() for uid in uids) == on_2


async def test_a_pod_replaced_while_the_operator_was_away_is_shown_unroutable_before_its_users_move(
    cluster, redis, make_redis, redis_url, prefix
):
    # The chaos run's burst of moves off a pod that "stayed routable": the operator came back
    # (or Redis took writes again) after game-1 had been replaced under its own name, and
    # evicted the old pod's users while every table it published called index 1 routable.
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, client):
        placed = await place(client, "u", 30)
    on_1 = sorted(uid for uid, pod in placed.items() if pod == 1)
    assert on_1
    await cluster.delete_pod(1)
    await cluster.create_pod(1)  # a new game-1, Ready, before the operator is back

    listener = make_redis().pubsub()
    await listener.subscribe(keys.changes_channel(prefix, NS))
    heard: list[changes.Change] = []

    async def evicted_1() -> bool:
        while (
            message := await listener.get_message(ignore_subscribe_messages=True, timeout=0.05)
        ) is not None:
            change = changes.parse(message["data"])
            if change is not None and change.service == ROUTE:
                heard.append(change)
        return any(c.kind is changes.ChangeKind.EVICTED and c.subject == "1" for c in heard)

    async with operator(cluster, redis_url, prefix):
        await poll_until(evicted_1, within=10, every=0.05)
        await wait_for_table(table, [0, 1, 2])
    await listener.aclose()
    first_eviction = next(i for i, c in enumerate(heard) if c.kind is changes.ChangeKind.EVICTED)
    tables_before = [c.routable for c in heard[:first_eviction] if c.kind is changes.ChangeKind.TABLE]
    assert any(routable is not None and 1 not in routable for routable in tables_before), heard


async def updated_pod_2_of_3(cluster: Cluster, table: RouteTable) -> None:
    """A rolling update under way: pod 2 runs the new revision, pods 0 and 1 are held back."""
    await cluster.start_rollout("rev-2")
    await cluster.replace_pod(2, grace=1, exit_after=0.1, start_after=0.2)
    await wait_for_table(table, [2])
    await outdated_in_status(cluster, [0, 1])


async def test_new_users_go_to_outdated_pods_at_once_when_the_updated_pod_reaches_its_cap(
    cluster, redis, redis_url, prefix
):
    # Between two runs of the operator, the only updated pod fills up: placement takes the
    # held-back outdated pods at once (NoAvailablePod for up to a tick before: the reviewer's
    # 22-34 refusals) and still no outdated pod while the updated one has room.
    async with running_route(cluster, redis, redis_url, prefix, 3, maxLinksPerPod=10) as (table, client):
        await updated_pod_2_of_3(cluster, table)
        assert set((await place(client, "first", 10)).values()) == {2}
        assert set((await place(client, "more", 10)).values()) == {0, 1}


async def test_new_users_go_to_outdated_pods_at_once_when_the_updated_pod_drains_itself(
    cluster, redis, redis_url, prefix
):
    async with running_route(cluster, redis, redis_url, prefix, 3) as (table, client):
        await updated_pod_2_of_3(cluster, table)
        pod_2 = ServerDriver(redis, namespace=NS, service=ROUTE, pod_index=2, prefix=prefix)
        await pod_2.set_routing_state(RoutingState.DENY_NEW_CALL)
        assert set((await place(client, "drained", 10)).values()) == {0, 1}
        # Back to Ready: new users go to the updated pod alone again, outdated pods held back.
        await pod_2.set_routing_state(RoutingState.READY)
        await wait_for_table(table, [2])
        assert set((await place(client, "later", 10)).values()) == {2}
