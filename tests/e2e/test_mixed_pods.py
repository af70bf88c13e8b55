"""Go pods and Python pods on one route: their reports, persistence and hand-offs interleave.

Pods 0, 2 and 4 run the Go ServerDriver (clients/go/internal/podsim, a subprocess running each
command it reads on stdin at once), pods 1, 3 and 5 the Python one. Workers pick random actions
(seeded; the seed is printed, ``SR_MIXED_SEED=<seed>`` replays the choices, not the timing): a
pod reports its load or drains, makes a user's link persistent (forced or tried), removes one
(keeping a temporary link or not, compare-and-delete or not), hands one user off, or hands every
user off and shuts down (then comes back Ready), while a Python gateway places users. Judged:

- every link counted under its pod and the counts equal the links (``counts_agree``), every
  second during the run and at the end;
- every link names a pod of the table;
- right after a quiet pod's hand-off of everyone, the pod holds at most ``left`` users, and the
  language of the pod makes no difference to any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from stateful_route import ClientDriver, NoAvailablePod, PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.testing.judge import counts_agree
from tests.go_replay import GoProgram, build_go_program

NS = "mixed"
SVC = "room"
PODS = 6
GO_PODS = {0, 2, 4}
USERS = 300
SECONDS = 8
WORKERS = 8


@pytest.fixture(scope="module")
def go_pods(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go pods' program, built once (skipped without Go: `make test` requires it)."""
    return build_go_program("podsim", tmp_path_factory.mktemp("go-podsim"))


class GoPods(GoProgram):
    """The Go subprocess: commands in, answers (matched by id) out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        super().__init__(process)
        self.ids = itertools.count()
        self.waiting: dict[str, asyncio.Future[list[str]]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        await super().ready()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self.stdout.readline():
            key, *answer = line.decode().split()
            self.waiting.pop(key).set_result(answer)

    async def do(self, pod: int, *command: object) -> list[str]:
        key = str(next(self.ids))
        future = self.waiting[key] = asyncio.get_running_loop().create_future()
        self.stdin.write(f"{key} {pod} {' '.join(str(c) for c in command)}\n".encode())
        await self.stdin.drain()
        answer = await asyncio.wait_for(future, 30)
        if answer[0] == "!NoAvailablePod":
            raise NoAvailablePod(NS, SVC)
        assert answer[0] == "ok", (pod, command, answer)
        return answer[1:]

    async def close(self, within: float) -> None:
        try:
            await super().close(within)
        finally:
            if self.reader is not None:
                self.reader.cancel()


class Pods:
    """Every pod of the route, the same calls whichever language runs it."""

    def __init__(self, go: GoPods, python: dict[int, ServerDriver]) -> None:
        self.go, self.python = go, python

    async def load(self, pod: int, load: int) -> None:
        if pod in GO_PODS:
            await self.go.do(pod, "load", load)
        else:
            await self.python[pod].set_load_state(load)

    async def routing(self, pod: int, state: RoutingState) -> None:
        if pod in GO_PODS:
            await self.go.do(pod, "routing", state.label)
        else:
            await self.python[pod].set_routing_state(state)

    async def persist(self, pod: int, uid: str) -> None:
        if pod in GO_PODS:
            await self.go.do(pod, "persist", uid)
        else:
            await self.python[pod].set_linked_pod(uid)

    async def try_persist(self, pod: int, uid: str) -> None:
        if pod in GO_PODS:
            await self.go.do(pod, "try", uid)
        else:
            await self.python[pod].try_set_linked_pod(uid)

    async def remove(self, pod: int, uid: str, keep_ms: int, expected: int | None) -> None:
        if pod in GO_PODS:
            if expected is None:
                await self.go.do(pod, "remove", uid, keep_ms)
            else:
                await self.go.do(pod, "remove_id", uid, expected, keep_ms)
        elif expected is None:
            await self.python[pod].remove_linked_pod(uid, keep_ms / 1000)
        else:
            await self.python[pod].remove_linked_pod_with_id(uid, expected, keep_ms / 1000)

    async def hand_off(self, pod: int, uid: str) -> None:
        if pod in GO_PODS:
            await self.go.do(pod, "handoff", uid)
        else:
            await self.python[pod].hand_off(uid)

    async def hand_off_all(self, pod: int, within: float, fail: str) -> tuple[int, int, int, int]:
        if pod in GO_PODS:
            moved, failed, left, waiting = await self.go.do(pod, "handoff_all", int(within * 1000), fail)
            return int(moved), int(failed), int(left), int(waiting)

        async def before(uid: str) -> None:
            if fail != "-" and uid.endswith(fail):
                raise RuntimeError("cannot save")

        done = await self.python[pod].hand_off_all(within=within, retry_every=0.05, before=before)
        return done.moved, done.failed, done.left, done.waiting


async def test_go_and_python_pods_share_a_route_without_a_count_going_wrong(
    go_pods, redis, make_redis, redis_url, prefix
):
    seed = int(os.environ.get("SR_MIXED_SEED", random.randrange(1 << 30)))
    print(f"\nmixed pods seed {seed} (SR_MIXED_SEED={seed} replays the choices)")
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(i) for i in range(PODS)])
    go = await GoPods.start(go_pods, redis_url, prefix, NS, SVC)
    python = {
        i: ServerDriver(make_redis(), namespace=NS, service=SVC, pod_index=i, prefix=prefix)
        for i in range(PODS)
        if i not in GO_PODS
    }
    pods = Pods(go, python)
    users = [f"user-{i}" for i in range(USERS)]
    busy: set[int] = set()  # pods handing everyone off (quiet meanwhile), at most two at once
    done: Counter[str] = Counter()
    by_language: Counter[str] = Counter()
    handed: list[tuple[int, tuple[int, int, int, int], int]] = []
    loop = asyncio.get_running_loop()
    try:
        await go.ready()
        async with ClientDriver(make_redis(), namespace=NS, prefix=prefix) as gateway:

            async def stored_pod(uid: str) -> int | None:
                link = await redis.get(table.keyring.route(NS, SVC).link(uid))
                return None if link is None else int(link.decode().rstrip("p"))

            async def hand_everyone_off(rng: random.Random, pod: int) -> None:
                fail = rng.choice(["-", "-", "7"])
                result = await pods.hand_off_all(pod, rng.uniform(0.3, 2.0), fail)
                _, per_pod = await counts_agree(redis, table, (NS, SVC), PODS)
                handed.append((pod, result, per_pod[pod]))
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                await pods.routing(pod, RoutingState.READY)  # the pod came back

            async def act(rng: random.Random) -> None:
                action = rng.choices(
                    ["place", "load", "drain", "persist", "try", "remove", "hand_off", "hand_off_all"],
                    weights=[30, 6, 3, 14, 8, 10, 10, 1],
                )[0]
                uid = rng.choice(users)
                if action == "place":
                    with contextlib.suppress(NoAvailablePod):
                        await gateway.compute_linked_pod(NS, uid, SVC)
                    done[action] += 1
                    return
                pod = rng.randrange(PODS)
                if pod in busy:
                    return
                if action == "hand_off_all" and len(busy) >= 2:
                    return
                by_language["go" if pod in GO_PODS else "python"] += 1
                done[action] += 1
                if action == "load":
                    await pods.load(pod, rng.randrange(20))
                elif action == "drain":
                    await pods.routing(pod, rng.choice([RoutingState.DENY_NEW_CALL, RoutingState.READY]))
                elif action == "persist":
                    await pods.persist(pod, uid)
                elif action == "try":
                    await pods.try_persist(pod, uid)
                elif action == "remove":
                    keep = rng.choice([0, 0, 2000])
                    expected = await stored_pod(uid) if rng.random() < 0.5 else None
                    await pods.remove(pod, uid, keep, expected)
                elif action == "hand_off":
                    await pods.hand_off(pod, uid)
                else:
                    busy.add(pod)
                    try:
                        await hand_everyone_off(rng, pod)
                    finally:
                        busy.discard(pod)

            async def worker(n: int, until: float) -> None:
                rng = random.Random(seed * 100 + n)
                while loop.time() < until:
                    await act(rng)
                    await asyncio.sleep(0)

            until = loop.time() + SECONDS
            workers = asyncio.gather(*(worker(n, until) for n in range(WORKERS)))
            checks = 0
            while not workers.done():
                await asyncio.wait({workers}, timeout=1)
                agree, per_pod = await counts_agree(redis, table, (NS, SVC), PODS)
                assert agree, f"seed {seed}: link counts {per_pod} differ from the links"
                checks += 1
            await workers

            # The end: every count is exact, every link names a pod of the table, and each
            # quiet pod held at most `left` users right after handing everyone off.
            agree, per_pod = await counts_agree(redis, table, (NS, SVC), PODS)
            assert agree, f"seed {seed}: link counts {per_pod} differ from the links"
            links = [await stored_pod(uid) for uid in users]
            assert all(pod is None or 0 <= pod < PODS for pod in links), f"seed {seed}"
            assert sum(per_pod) == sum(pod is not None for pod in links), f"seed {seed}"
            # `failed` and `waiting` count users at the moment a hand-off tried them; such a user may
            # leave (its pod driver removes it, its link expires) before `left` is counted, so neither
            # is bounded by `left`. What a quiet pod still holds is.
            for pod, (_, _failed, left, _waiting), held in handed:
                assert held <= left, f"seed {seed}: pod {pod} holds {held} after leaving {left}"
            print(
                f"mixed pods: actions {dict(done)}, pod actions by language {dict(by_language)}, "
                f"hand-offs of everyone {[(pod, r) for pod, r, _ in handed]}, links per pod {per_pod}"
            )
            assert checks >= 5
            assert by_language["go"] > 100, by_language
            assert by_language["python"] > 100, by_language
            assert done["persist"] > 20
            assert done["hand_off"] > 20
    finally:
        await go.close(30)
