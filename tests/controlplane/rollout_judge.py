"""What the rollout tests against the real StatefulSet controller share: the StatefulSet steered
like `kubectl apply` / `rollout undo` would, gateways placing users throughout (judged as the churn
test judges them), and a follower checking that the route table follows the controller's
revisions."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from stateful_route import ClientDriver, RouteTable
from stateful_route.core.constants import POD_INDEX_LABEL, REVISION_LABEL
from stateful_route.store.keys import changes_channel
from stateful_route.testing.controlplane import ControlPlane
from stateful_route.testing.judge import Findings, Timeline, Verdict, ask, observe
from tests.controlplane.test_real_statefulset import ROUTE, STS, Api, stateful_set

STALENESS_BOUND = 1.0
# How long the table may disagree with the controller's revisions: the operator hears of a
# StatefulSet's status and of its pods on two watches, and reconciles every second anyway.
FOLLOW_LAG = 2.0


class Workload(Api):
    """The StatefulSet, steered as its owner would; read as plain JSON (the typed models cost
    milliseconds per pod to build, on the cores the operator and the servers share)."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        super().__init__(control_plane, namespace)
        self.control_plane = control_plane

    async def create(self, replicas: int, *, strategy: dict[str, Any] | None = None,
                     policy: str = "OrderedReady", grace: int = 1) -> None:  # fmt: skip
        body = stateful_set(replicas, grace=grace)
        body["spec"]["podManagementPolicy"] = policy
        if strategy is not None:
            body["spec"]["updateStrategy"] = strategy
        await asyncio.to_thread(self.apps.create_namespaced_stateful_set, self.namespace, body)

    async def deploy(self, image: str) -> None:
        """`kubectl apply` of a new pod template (`kubectl rollout undo` writes the old one back)."""
        await self._patch(
            {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": image}]}}}}
        )

    async def set_partition(self, partition: int) -> None:
        await self._patch({"spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}}})

    async def resize(self, replicas: int) -> None:
        await self._patch({"spec": {"replicas": replicas}})

    async def _patch(self, patch: dict[str, Any]) -> None:
        """Patch the StatefulSet and wait until the controller has seen it (its status, revisions
        included, is then of this spec)."""
        await asyncio.to_thread(self.apps.patch_namespaced_stateful_set, STS, self.namespace, patch)
        await self.until(
            lambda sts, _: sts["status"].get("observedGeneration", 0) >= sts["metadata"]["generation"]
        )

    async def read(self) -> dict[str, Any]:
        return dict(
            await asyncio.to_thread(_json, self.apps.read_namespaced_stateful_set, STS, self.namespace)
        )

    async def listed(self) -> dict[int, dict[str, Any]]:
        """The StatefulSet's pods by index, terminating ones included."""
        listed = await asyncio.to_thread(
            _json, self.core.list_namespaced_pod, self.namespace, label_selector=f"app={STS}"
        )
        return {index(pod): pod for pod in listed["items"]}

    async def until(self, check: Callable[[dict[str, Any], dict[int, dict[str, Any]]], bool],
                    within: float = 60) -> None:  # fmt: skip
        """Until ``check(stateful set, pods by index)`` holds."""
        async with asyncio.timeout(within):
            while not check(await self.read(), await self.listed()):
                await asyncio.sleep(0.1)

    async def until_updated(self, count: int, within: float = 60) -> None:
        """Until ``count`` pods run the update revision, Ready and not terminating."""
        await self.until(lambda sts, pods: len(updated(sts, pods)) >= count, within)

    async def until_settled(self, replicas: int, within: float = 60) -> None:
        """Until the rollout is done: every pod of the update revision, Ready, none terminating."""

        def done(sts: dict[str, Any], pods: dict[int, dict[str, Any]]) -> bool:
            status = sts["status"]
            return (
                status.get("currentRevision") == status.get("updateRevision")
                and sorted(updated(sts, pods)) == list(range(replicas))
                and len(pods) == replicas
            )

        await self.until(done, within)


def _json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def index(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["labels"][POD_INDEX_LABEL])


def revision(pod: dict[str, Any]) -> str | None:
    return pod["metadata"]["labels"].get(REVISION_LABEL)


def live(pod: dict[str, Any]) -> bool:
    """Ready and not terminating."""
    conditions = pod.get("status", {}).get("conditions") or ()
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready and not pod["metadata"].get("deletionTimestamp")


def updated(sts: dict[str, Any], pods: dict[int, dict[str, Any]]) -> list[int]:
    """Live pods of the update revision."""
    update = sts["status"].get("updateRevision")
    return [i for i, pod in pods.items() if revision(pod) == update and live(pod)]


def expected_outdated(sts: dict[str, Any], pods: Iterable[dict[str, Any]]) -> set[int]:
    """The pods the controller will replace, by this test's own reading of the StatefulSet:
    beyond the replicas, or of another revision than the update revision (at or above the
    partition for RollingUpdate; every one for OnDelete)."""
    spec = sts["spec"]
    partition = (spec.get("updateStrategy", {}).get("rollingUpdate") or {}).get("partition", 0)
    update = sts["status"].get("updateRevision")
    return {
        index(pod)
        for pod in pods
        if index(pod) >= spec["replicas"] or (revision(pod) != update and index(pod) >= partition)
    }


@dataclass
class Follower:
    """Samples the controller's view (the StatefulSet and its pods) and the route table, and
    records every disagreement that outlasts ``FOLLOW_LAG``: a live pod the controller will
    replace not written outdated (or the reverse), and a pod it will replace still taking new
    users while a pod that stays takes them."""

    workload: Workload
    table: RouteTable
    violations: list[str] = field(default_factory=list)
    outdated_seen: set[int] = field(default_factory=set)  # pods the route's status named outdated
    most_terminating: int = 0  # most pods terminating at once (the controller's pace)
    samples: int = 0
    _since: dict[str, float] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            await asyncio.sleep(0.1)

    async def sample(self) -> None:
        sts, pods = await self.workload.read(), await self.workload.listed()
        ns = self.workload.namespace
        snapshot = await self.table.snapshot(ns, ROUTE)
        phases = await self.table.phases(ns, ROUTE)
        status = await self.workload.status()
        self.outdated_seen |= set(status.get("outdatedPods") or ())
        terminating = sum(bool(p["metadata"].get("deletionTimestamp")) for p in pods.values())
        self.most_terminating = max(self.most_terminating, terminating)
        alive = {i for i, p in pods.items() if live(p) and i in snapshot.pods}
        should = expected_outdated(sts, (pods[i] for i in alive))
        written = {i for i, phase in phases.items() if phase.outdated and i in alive}
        problems = set()
        if should != written:
            problems.add(f"outdated: expected {sorted(should)}, written {sorted(written)}")
        if (alive - should) & snapshot.available and should & snapshot.available:
            problems.add(f"pods {sorted(should & snapshot.available)} take new users, to be replaced")
        now = time.monotonic()
        for problem in problems:
            began = self._since.setdefault(problem, now)
            if now - began > FOLLOW_LAG and problem not in self.violations:
                self.violations.append(problem)
        for gone in set(self._since) - problems:
            del self._since[gone]
        self.samples += 1


def moves(answers: Sequence[tuple[str, int, float, float]], timeline: Timeline) -> dict[str, list[float]]:
    """Each user's moves, each dated by its cause: when the pod it left became unroutable (a
    user may answer late, but its move belongs to the rollout that took its pod away). A move
    is an answer naming another pod, or the same ordinal after that pod came back routable in
    between (replaced: the controller recreates a pod under its name at once, and a user placed
    again on the new one lost its state as surely as one moved)."""
    seen: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for uid, pod, start, end in answers:
        seen[uid].append((end, start, pod))
    moved: dict[str, list[float]] = defaultdict(list)
    for uid, answers_of in seen.items():
        answers_of.sort()
        for (then, _, was), (at, began, pod) in itertools.pairwise(answers_of):
            spans = [
                *timeline.episodes.get(was, []),
                *([(timeline.since[was], math.inf)] if was in timeline.since else []),
            ]
            if pod != was:
                moved[uid].append(min((a for a, b in spans if a <= at and b >= then), default=at))
            elif returned := [a for a, b in spans if then < b <= began]:
                moved[uid].append(returned[0])
    return moved


@dataclass
class Report:
    verdict: Verdict
    findings: Findings
    phases: list[Counter[str]]  # per phase (between two marks): moves per user, by their cause
    answers: list[tuple[str, int, float, float]]  # every answer: uid, pod, start, end
    timeline: Timeline
    marks: list[float]

    def history(self, uid: str) -> list[str]:
        """The user's answers as `pod@time` (the pod's unroutable spans marked), for a failure."""
        shown, last = [], None
        for who, pod, _, end in self.answers:
            if who == uid and pod != last:
                shown.append(f"{pod}@{end:.2f}")
                last = pod
        spans = {p: [(round(a, 2), round(b, 2)) for a, b in e] for p, e in self.timeline.episodes.items()}
        return [*shown, f"marks {[round(m, 2) for m in self.marks]}", f"unroutable {spans}"]


class Gateways:
    """``drivers`` ClientDrivers looking up ``users`` users in a loop, judged against the
    routability Redis publishes; ``mark()`` splits the run into phases (one per rollout)."""

    def __init__(self, make_redis: Callable[..., aioredis.Redis], prefix: str, namespace: str,
                 *, users: int = 300, drivers: int = 3) -> None:  # fmt: skip
        self.make_redis, self.prefix, self.namespace = make_redis, prefix, namespace
        self.users, self.drivers = users, drivers
        self.timeline = Timeline(8)
        self.findings = Findings(bound=STALENESS_BOUND)
        self.marks: list[float] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: list[ClientDriver] = []

    async def start(self) -> None:
        """Place every user, then keep asking."""
        route = (self.namespace, ROUTE)
        async with ClientDriver(self.make_redis(), namespace=self.namespace, prefix=self.prefix) as first:
            for uid in range(self.users):
                await first.compute_linked_pod(self.namespace, f"user-{uid}", ROUTE)
        table = RouteTable(self.make_redis(), prefix=self.prefix)
        channel = changes_channel(self.prefix, self.namespace)
        observing = observe(self.make_redis(), self.timeline, channel, self._stop, table, route)
        self._tasks.append(asyncio.create_task(observing))
        for i in range(self.drivers):
            client = ClientDriver(self.make_redis(), namespace=self.namespace, prefix=self.prefix)
            await client.__aenter__()
            self._clients.append(client)
            asking = ask(
                client, self.findings, random.Random(i), self._stop, users=self.users, route=route, pause=0.05
            )
            self._tasks.append(asyncio.create_task(asking))
        await asyncio.sleep(0.5)  # every user answered at least once before the first mark
        self.mark()

    def mark(self) -> None:
        self.marks.append(time.time())

    async def stop(self) -> Report:
        """Stop asking; the verdict, and each phase's moves (the last phase ends now)."""
        self.mark()
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for client in self._clients:
            await client.__aexit__(None, None, None)
        answers = list(self.findings.answers)
        moved = moves(answers, self.timeline)
        phases = [
            Counter({uid: n for uid, causes in moved.items() if (n := sum(a <= c < b for c in causes))})
            for a, b in itertools.pairwise(self.marks)
        ]
        verdict = self.findings.judge(self.timeline)
        return Report(verdict, self.findings, phases, answers, self.timeline, self.marks)
