"""An index whose pod was replaced before the operator saw it go is fenced (written unroutable
until its old users are evicted). During a rolling update that fence must not leave new users
nowhere to go: the chaos run's bursts of NoAvailablePod while outdated pods were routable came
from a fenced table that still held the outdated pods back for the very pod it fenced."""

from __future__ import annotations

import dataclasses

import pytest

from stateful_route import ClientDriver, PodPending, RoutingState
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.reconciler import Reconciler
from stateful_route.controller.rollouts import StatefulSetRecord
from stateful_route.controller.spec import Rebind, RouteRef, RouteSpec
from tests.routes import NS

ROLLING = StatefulSetRecord("game", replicas=3, current_revision="rev-1", update_revision="rev-2")
# Pod 2 already runs rev-2; pods 0 and 1 are outdated and held back.
PODS = [
    PodRecord(
        f"game-{i}", f"pod-{i}", i, True, False, RoutingState.READY, revision="rev-2" if i == 2 else "rev-1"
    )
    for i in range(3)
]


@pytest.mark.parametrize("rebind", [Rebind.EAGER, Rebind.LAZY])
async def test_a_fenced_index_in_a_rollout_never_leaves_new_users_without_a_pod(
    redis, prefix, mocker, rebind
):
    route = RouteRef(NS, "room", "uid-1", RouteSpec(stateful_set="game", service="room", rebind=rebind))
    reconciler = Reconciler(redis, prefix=prefix)
    assert await reconciler.configure(route)
    settled = await reconciler.reconcile(route, PODS, ROLLING)
    assert settled is not None
    assert settled.plan.held_back
    assert sorted(settled.snapshot.available) == [2]
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        on_2 = [f"user-{i}" for i in range(20)]
        assert {await client.compute_linked_pod(NS, uid, "room") for uid in on_2} == {2}

        # game-2 is replaced under its name (a new uid) before the operator hears it go.
        written = mocker.spy(reconciler.table, "put_pods")
        replaced = [*PODS[:2], dataclasses.replace(PODS[2], uid="pod-2-new")]
        result = await reconciler.reconcile(route, replaced, ROLLING)
        assert result is not None
        assert [e.pod for e in result.evictions] == [2]
        tables = [list(call.args[2]) for call in written.call_args_list]
        assert len(tables) == 2  # the fence, then the table again
        fence = {pod.index: pod for pod in tables[0]}
        assert not fence[2].routable
        assert sorted(i for i, pod in fence.items() if pod.available) == [0, 1]
        assert sorted(result.snapshot.available) == [2]  # the fence lifted: outdated held back again

        # The old pod's users were rebound (Eager) only once the fence was lifted: on the new
        # pod, not on outdated pods they would leave again. Lazy ones are placed at their lookup.
        rebound = await client.batch_get_linked_pod(NS, on_2, "room")
        assert rebound == ({2: on_2} if rebind is Rebind.EAGER else {})
        assert {await client.compute_linked_pod(NS, uid, "room") for uid in on_2} == {2}


@pytest.mark.parametrize("rebind", [Rebind.EAGER, Rebind.LAZY])
async def test_the_users_of_a_fenced_index_wait_for_the_fence_to_lift_in_a_rollout(redis, prefix, rebind):
    """On a real cluster the fence is the usual path, not the rare one: kubelet reports a pod
    stopped and deletes it, and the StatefulSet controller creates its successor under the same
    name within milliseconds, before the operator lists the pods. While fenced, the outdated pods
    take new users; the old pod's users looking up in that window were placed on them, to move
    again when they are replaced (seen against kube-controller-manager v1.37.2: every user of
    the first pod of a rolling update moved twice). They wait instead (PodPending), and are
    placed on the new pod once the fence is lifted."""
    route = RouteRef(NS, "room", "uid-1", RouteSpec(stateful_set="game", service="room", rebind=rebind))
    reconciler = Reconciler(redis, prefix=prefix)
    assert await reconciler.configure(route)
    assert await reconciler.reconcile(route, PODS, ROLLING) is not None
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        on_2 = [f"user-{i}" for i in range(20)]
        assert {await client.compute_linked_pod(NS, uid, "room") for uid in on_2} == {2}
        put_pods = reconciler.table.put_pods
        in_the_fence: list[object] = []

        async def lookups_before_the_lift(*args: object, **kwargs: object) -> bool:
            snapshot = await reconciler.table.snapshot(NS, "room")
            if 2 in snapshot.pods and not snapshot.pods[2].routable:  # the fence, users evicted
                for uid in on_2[:5]:
                    try:
                        in_the_fence.append(await client.compute_linked_pod(NS, uid, "room"))
                    except PodPending as pending:
                        in_the_fence.append(pending)
            return await put_pods(*args, **kwargs)  # type: ignore[arg-type]

        reconciler.table.put_pods = lookups_before_the_lift  # type: ignore[method-assign]
        replaced = [*PODS[:2], dataclasses.replace(PODS[2], uid="pod-2-new")]
        assert await reconciler.reconcile(route, replaced, ROLLING) is not None
        assert len(in_the_fence) == 5
        assert all(isinstance(answer, PodPending) for answer in in_the_fence), in_the_fence
        assert {await client.compute_linked_pod(NS, uid, "room") for uid in on_2} == {2}
