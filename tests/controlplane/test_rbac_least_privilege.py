"""The operator's ClusterRole (manifests/base, rendered by `kubectl kustomize`) is the least
privilege that works: the operator logged in with the whole role does everything below, and with
any one permission (one verb on one resource) taken away, a named behaviour fails.

Each run walks the same steps in order, each a behaviour the operator must show; a run without
permission P asserts that the steps before P's behaviour still work (the failure is P's, not a
broken start) and that P's behaviour does not happen."""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kubernetes
import pytest
import redis.asyncio as aioredis

from stateful_route import ClientDriver, RouteTable
from stateful_route.core.constants import GROUP, PLURAL, VERSION
from stateful_route.testing.cleanup import delete_prefix
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.kubelet import Kubelet
from stateful_route.testing.sim import operator_thread
from tests.controlplane.namespaces import create_namespace, delete_namespace
from tests.controlplane.roles import Permission, grant, operator_role, permissions, revoke, without
from tests.controlplane.test_real_statefulset import ROUTE, STS, Api, stateful_set
from tests.routes import poll_until

# How long a behaviour may take when it works (it takes about a second), and so how long one
# that does not happen is waited for before it is called broken.
WITHIN = 15
# Runs at once against the one control plane, each in its own namespace with its own operator
# thread: the rows' waits overlap instead of adding up.
AT_ONCE = 5

Action = Callable[[], Awaitable[None]]
Check = Callable[[], Awaitable[bool]]


class Behaviour(enum.Enum):
    """What the operator does, in the order a run checks it."""

    TABLE_BUILT = "the route table is built from the StatefulSet's pods"
    STATUS_WRITTEN = "the route's status is written"
    PODS_FOLLOWED = "the table follows pods created after the start (a scale-up)"
    SCALE_SEEN = "a scale-up's new pod takes new users (not held back as if scaled away)"
    EVENTS_POSTED = "an eviction is posted as an Event on the route"
    ROLLOUT_SEEN = "pods outdated by a rolling update take no new users"
    SPEC_FOLLOWED = "a change of the route's spec reaches its policy in Redis"
    DELETION_CLEANED = "deleting the route removes its table"


# Which behaviour breaks without each permission of the role. A permission the operator can do
# without has no row: it is taken out of the role instead (test_every_permission_has_a_row).
BREAKS = {
    Permission("", "pods", "list"): Behaviour.TABLE_BUILT,
    Permission("", "pods", "watch"): Behaviour.PODS_FOLLOWED,
    # kopf runs no handler before every index has been listed, the StatefulSets' included.
    Permission("apps", "statefulsets", "list"): Behaviour.TABLE_BUILT,
    # Listed once, never watched: the StatefulSet stays at 3 replicas, so pod 3 is outdated.
    Permission("apps", "statefulsets", "watch"): Behaviour.SCALE_SEEN,
    Permission("", "events", "create"): Behaviour.EVENTS_POSTED,
    Permission(GROUP, "statefulroutes", "list"): Behaviour.TABLE_BUILT,
    # The operator claims a table only once kopf's finalizer is on the route, which kopf adds by
    # patching the route and sees through its watch: without either, no table.
    Permission(GROUP, "statefulroutes", "watch"): Behaviour.TABLE_BUILT,
    Permission(GROUP, "statefulroutes", "patch"): Behaviour.TABLE_BUILT,
    Permission(GROUP, "statefulroutes/status", "patch"): Behaviour.STATUS_WRITTEN,
}


class Run:
    """One operator run's steps over a StatefulSet of 3 pods (OnDelete, so a rolling update
    replaces only the pod a test deletes) and its route (Eager)."""

    def __init__(
        self, control_plane: ControlPlane, namespace: str, redis: aioredis.Redis, prefix: str
    ) -> None:
        self.api = Api(control_plane, namespace)
        self.namespace = namespace
        self.redis = redis
        self.prefix = prefix
        self.table = RouteTable(redis, prefix=prefix)

    async def create(self) -> None:
        """The StatefulSet, its 3 pods Ready, and the route. Ready before the operator starts, which
        lists them once: a run without the watch on pods never hears of a pod's readiness, and one
        listed unready would keep the table from being built."""
        body = stateful_set(3)
        body["spec"]["updateStrategy"] = {"type": "OnDelete"}
        await asyncio.to_thread(self.api.apps.create_namespaced_stateful_set, self.namespace, body)

        async def all_ready() -> bool:
            pods = (await self.api.pods()).values()
            return len(pods) == 3 and all(
                any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ()) for p in pods
            )

        await poll_until(all_ready, within=WITHIN, every=0.1)
        await self.api.create_route(rebind="Eager")

    async def _table_is(self, pods: list[int], available: list[int] | None = None) -> bool:
        snapshot = await self.table.snapshot(self.namespace, ROUTE)
        return sorted(snapshot.pods) == pods and sorted(snapshot.available) == (available or pods)

    async def table_built(self) -> bool:
        return await self._table_is([0, 1, 2])

    async def status_written(self) -> bool:
        return (await self.api.status()).get("summary") == "3/3"

    async def scale_up(self) -> None:
        await self.api.scale(4)

    async def pods_followed(self) -> bool:
        return sorted((await self.table.snapshot(self.namespace, ROUTE)).pods) == [0, 1, 2, 3]

    async def scale_seen(self) -> bool:
        return await self._table_is([0, 1, 2, 3])

    async def roll_pod_3(self) -> None:
        """Users on every pod, then a new template (a rolling update under OnDelete) and pod 3
        deleted: it is evicted, and comes back on the new revision."""
        async with ClientDriver(self.redis, namespace=self.namespace, prefix=self.prefix) as client:
            placed = [await client.compute_linked_pod(self.namespace, f"user-{i}", ROUTE) for i in range(40)]
        assert 3 in placed
        patch = {"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}
        await asyncio.to_thread(self.api.apps.patch_namespaced_stateful_set, STS, self.namespace, patch)
        await self.api.delete_pod(3)

    async def events_posted(self) -> bool:
        events = await asyncio.to_thread(self.api.core.list_namespaced_event, self.namespace)
        return any(
            e.reason == "Evicted" and e.involved_object.name == ROUTE and "from pod 3" in (e.message or "")
            for e in events.items
        )

    async def rollout_seen(self) -> bool:
        # The new pod 3 runs the update revision; 0-2 are outdated and take no new users.
        return await self._table_is([0, 1, 2, 3], available=[3])

    async def change_spec(self) -> None:
        patch = {"spec": {"maxLinksPerPod": 1000}}
        patch_route = self.api.custom.patch_namespaced_custom_object
        await asyncio.to_thread(patch_route, GROUP, VERSION, self.namespace, PLURAL, ROUTE, patch)

    async def spec_followed(self) -> bool:
        config = self.table.keyring.route(self.namespace, ROUTE).config
        return await self.redis.hget(config, "cap") in (b"1000", "1000")

    async def delete_route(self) -> None:
        await asyncio.to_thread(
            self.api.custom.delete_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, ROUTE
        )

    async def deletion_cleaned(self) -> bool:
        return not (await self.table.snapshot(self.namespace, ROUTE)).pods

    def steps(self) -> list[tuple[Behaviour, Action | None, Check]]:
        """(behaviour, what a test does first, whether the operator did its part)."""
        return [
            (Behaviour.TABLE_BUILT, None, self.table_built),
            (Behaviour.STATUS_WRITTEN, None, self.status_written),
            (Behaviour.PODS_FOLLOWED, self.scale_up, self.pods_followed),
            (Behaviour.SCALE_SEEN, None, self.scale_seen),
            (Behaviour.EVENTS_POSTED, self.roll_pod_3, self.events_posted),
            (Behaviour.ROLLOUT_SEEN, None, self.rollout_seen),
            (Behaviour.SPEC_FOLLOWED, self.change_spec, self.spec_followed),
            (Behaviour.DELETION_CLEANED, self.delete_route, self.deletion_cleaned),
        ]


async def happens(check: Check) -> bool:
    try:
        await poll_until(check, within=WITHIN, every=0.1)
    except TimeoutError:
        return False
    return True


@dataclass
class Outcome:
    """One run's result: what failed (None: every step as expected) and the refusals it logged."""

    error: BaseException | None = None
    forbidden: list[str] = field(default_factory=list)


class Refusals(logging.Handler):
    """Each operator thread's refused calls, told apart by the thread's name. kopf logs a refused
    call as APIForbiddenError, the official client as 403 Forbidden."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_thread: dict[str, list[str]] = defaultdict(list)

    def emit(self, record: logging.LogRecord) -> None:
        if "Forbidden" in (message := record.getMessage()):
            self.by_thread[record.threadName or ""].append(message)


async def walk(run: Run, taken: Permission | None) -> None:
    """The run's steps up to the behaviour ``taken`` breaks: each before it happens, that one not."""
    broken = None if taken is None else BREAKS[taken]
    for behaviour, action, check in run.steps():
        if action is not None:
            await action()
        if behaviour is broken:
            assert not await happens(check), f"{behaviour.value}, though the role lacks {taken}"
            return
        assert await happens(check), f"not so: {behaviour.value}"


async def one_run(
    control_plane: ControlPlane,
    kubelet: Kubelet,
    redis_url: str,
    taken: Permission | None,
    refusals: Refusals,
    at_once: asyncio.Semaphore,
) -> Outcome:
    """A run in a namespace, a Redis prefix and an operator thread of its own."""
    outcome = Outcome()
    async with at_once:
        role = await asyncio.to_thread(operator_role, control_plane)
        with control_plane.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            namespace = await asyncio.to_thread(create_namespace, core, kubelet)
            account = await asyncio.to_thread(
                grant, control_plane, namespace, role if taken is None else without(role, taken)
            )
            prefix = f"t{secrets.token_hex(4)}"
            redis = aioredis.Redis.from_url(redis_url)
            run = Run(control_plane, namespace, redis, prefix)
            name = f"operator-{namespace}"
            try:
                # Before the operator starts: started first, the run without the watch on pods
                # saw its table follow the scale-up (4 runs of 4).
                await run.create()
                async with operator_thread(
                    account, redis_url, prefix, namespaces=[namespace], thread_name=name
                ):
                    await walk(run, taken)
            except Exception as error:
                outcome.error = error
            finally:
                await asyncio.to_thread(revoke, control_plane, account)
                run.api.client.close()
                await delete_prefix(redis, prefix)
                await redis.aclose()
                await asyncio.to_thread(delete_namespace, core, namespace)
            outcome.forbidden = refusals.by_thread.pop(name, [])
    return outcome


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    kubelet: Kubelet,
    installed: Any,
    redis_url: str,
) -> dict[Permission | None, Outcome]:
    """The run of every row this session runs (the whole role's under None), AT_ONCE of them at a
    time: most of a run is waiting, WITHIN seconds, for the behaviour that must not happen."""
    rows: list[Permission | None] = [
        item.callspec.params["taken"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == ROW_TEST
    ]  # only those selected: `-k` picks rows

    async def every_run() -> dict[Permission | None, Outcome]:
        # Each run holds a few of the loop's threads at a time, some for seconds (an operator's
        # start and stop): asyncio's default of 6 would make the runs wait for each other.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=8 * AT_ONCE))
        at_once = asyncio.Semaphore(AT_ONCE)
        runs = (one_run(control_plane, kubelet, redis_url, taken, refusals, at_once) for taken in rows)
        return dict(zip(rows, await asyncio.gather(*runs), strict=True))

    refusals = Refusals()
    root = logging.getLogger()
    level = root.level
    root.addHandler(refusals)
    root.setLevel(logging.INFO)
    try:
        found = asyncio.run(every_run())
    finally:
        root.removeHandler(refusals)
        root.setLevel(level)
    # Refusals logged by no run's operator thread: the whole role's row cannot tell they were
    # not its own, so they fail it.
    if stray := [m for messages in refusals.by_thread.values() for m in messages]:
        found[None].forbidden.extend(stray)
    return found


def test_every_permission_has_a_row(control_plane: ControlPlane, installed: Any):
    """The table above names a behaviour for exactly the permissions the role grants."""
    assert set(BREAKS) == permissions(operator_role(control_plane))


ROW_TEST = "test_without_one_permission_a_named_behaviour_fails"


@pytest.mark.slow
@pytest.mark.timeout(360)  # the first row's setup runs every row
@pytest.mark.parametrize("taken", [None, *sorted(BREAKS)], ids=lambda p: str(p or "whole role"))
def test_without_one_permission_a_named_behaviour_fails(
    outcomes: dict[Permission | None, Outcome], taken: Permission | None
):
    outcome = outcomes[taken]
    if outcome.error is not None:
        raise outcome.error
    if taken is None:
        assert outcome.forbidden == []
    else:
        assert outcome.forbidden, f"nothing was refused without {taken}"
