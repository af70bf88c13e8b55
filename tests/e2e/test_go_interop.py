"""A Python gateway and a Go gateway (clients/go) serve one route while its pods change.

A table writer changes pod states through RouteTable (NotReady, terminating, drained, shut down,
at most two pods at a time, each episode undone after a while); the Python ClientDriver and a Go
ClientDriver (clients/go/internal/interop, a subprocess answering the uids it reads on stdin) ask
for random users' pods throughout. Judged on the routability Redis published
(stateful_route.testing.judge), both gateways' answers together, in the order they ended:

- no answer names a pod unroutable for more than one second when the call began (either gateway);
- a user's answer changes only after the pod it left became unroutable, whichever gateway gave
  the two answers, so the gateways never name two routable pods for one user: they agree;
- per-pod link counts equal the links, during the churn and after;
- at the end both gateways name, for every user, the pod its stored link names.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from stateful_route import ClientDriver, NoAvailablePod, PodPending, PodState, RouteTable, RoutingState
from stateful_route.store.keys import changes_channel
from stateful_route.testing.churning import episodes as run_episodes
from stateful_route.testing.judge import Findings, Timeline, counts_agree, observe
from tests.go_replay import GoProgram, build_go_program

NS = "games"
SVC = "room"
PODS = 5
USERS = 2_000
CHURN_SECONDS = 12
STALENESS_BOUND = 1.0
SEED = 20261207


@pytest.fixture(scope="module")
def go_gateway(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go gateway, built once."""
    return build_go_program("interop", tmp_path_factory.mktemp("go-interop"))


class GoGateway(GoProgram):
    """The Go subprocess: a batch of uids in, one answer line per uid out."""

    async def ask(self, uids: list[str]) -> list[tuple[str, str, float, float]]:
        self.stdin.write("".join(f"{uid}\n" for uid in uids).encode())
        await self.stdin.drain()
        answers = []
        for _ in uids:
            uid, answer, start, end = (await asyncio.wait_for(self.stdout.readline(), 10)).decode().split()
            answers.append((uid, answer, float(start), float(end)))
        return answers


async def ask_go(gateway: GoGateway, findings: Findings, rng: random.Random, stop: asyncio.Event) -> None:
    """As judge.ask, through the Go gateway."""
    while not stop.is_set():
        for uid, answer, start, end in await gateway.ask(
            [f"user-{rng.randrange(USERS)}" for _ in range(100)]
        ):
            if answer == "!NoAvailablePod":
                findings.no_pod.append(start)
                findings.errors["NoAvailablePod"] += 1
            elif answer == "!PodPending":
                findings.errors["PodPending"] += 1
            elif answer.startswith("!"):
                findings.unexpected.append(answer)
            else:
                findings.answers.append((uid, int(answer), start, end))


async def ask_python(
    client: ClientDriver, findings: Findings, rng: random.Random, stop: asyncio.Event
) -> None:
    """As judge.ask, paced like the Go gateway (a batch of 100, then a pause): judge.ask yields
    only between batches, and its cache hits would take the event loop from the Go gateway's
    replies (millions of answers to keep)."""
    while not stop.is_set():
        for uid in (f"user-{rng.randrange(USERS)}" for _ in range(100)):
            start = time.time()
            try:
                pod = await client.compute_linked_pod(NS, uid, SVC)
            except PodPending:
                findings.errors["PodPending"] += 1
                continue
            except NoAvailablePod:
                findings.no_pod.append(start)
                findings.errors["NoAvailablePod"] += 1
                continue
            except Exception as exc:  # anything else breaks the promise
                findings.unexpected.append(repr(exc))
                continue
            findings.answers.append((uid, pod, start, time.time()))
        await asyncio.sleep(0.002)


async def churn(table: RouteTable, rng: random.Random, seconds: float) -> Counter[str]:
    """Pods go NotReady, terminating, drained or shut down and come back, two at most at once."""
    pods = {i: PodState(i) for i in range(PODS)}
    lock = asyncio.Lock()

    async def write(pod: int, state: PodState) -> None:
        async with lock:
            pods[pod] = state
            await table.put_pods(NS, SVC, list(pods.values()))

    async def episode(pod: int, kind: str) -> None:
        trouble = {
            "not-ready": PodState(pod, ready=False),
            "terminating": PodState(pod, terminating=True),
            "drain": PodState(pod, routing=RoutingState.DENY_NEW_CALL),
            "shutdown": PodState(pod, routing=RoutingState.SHUTDOWN),
        }[kind]
        await write(pod, trouble)
        await asyncio.sleep(rng.uniform(0.3, 2.0))
        await write(pod, PodState(pod))

    kinds = ["not-ready", "terminating", "drain", "shutdown"]
    return await run_episodes(episode, rng, seconds, PODS, kinds, gap=(0.1, 0.5))


async def test_python_and_go_gateways_agree_under_churn(go_gateway, redis, make_redis, redis_url, prefix):
    table = RouteTable(redis, prefix=prefix)
    await table.put_pods(NS, SVC, [PodState(i) for i in range(PODS)])
    timeline = Timeline(PODS)
    py_findings, go_findings = Findings(bound=STALENESS_BOUND), Findings(bound=STALENESS_BOUND)
    go = await GoGateway.start(go_gateway, redis_url, prefix, NS, SVC)
    stop = asyncio.Event()
    checks = 0
    try:
        await go.ready()
        async with ClientDriver(make_redis(), namespace=NS, prefix=prefix) as python:
            observer = asyncio.create_task(
                observe(make_redis(), timeline, changes_channel(prefix, NS), stop, table, (NS, SVC))
            )
            await asyncio.sleep(0.2)  # the observer reads the table first
            askers = [
                asyncio.create_task(ask_python(python, py_findings, random.Random(SEED), stop)),
                asyncio.create_task(ask_go(go, go_findings, random.Random(SEED + 1), stop)),
            ]
            try:
                churning = asyncio.create_task(churn(table, random.Random(SEED + 2), CHURN_SECONDS))
                while not churning.done():
                    await asyncio.wait({churning}, timeout=2)
                    agree, _ = await counts_agree(redis, table, (NS, SVC), PODS)
                    assert agree, "per-pod link counts differ from the links that exist"
                    checks += 1
                episodes = await churning
                await asyncio.sleep(1.5)  # every pod back for longer than the bound
            finally:
                stop.set()
                await asyncio.gather(*askers, observer)

            both = Findings(bound=STALENESS_BOUND)
            both.answers = sorted(py_findings.answers + go_findings.answers, key=lambda answer: answer[3])
            both.no_pod = sorted(py_findings.no_pod + go_findings.no_pod)
            counted = (len(py_findings.answers), len(go_findings.answers))
            verdict = both.judge(timeline)
            print(
                f"\ninterop churn: {dict(episodes)}; answers python {counted[0]}, go {counted[1]}; "
                f"worst staleness {verdict.worst * 1000:.1f} ms (bound {STALENESS_BOUND:.0f} s); "
                f"errors python {dict(py_findings.errors)}, go {dict(go_findings.errors)}"
            )
            assert py_findings.unexpected == []
            assert go_findings.unexpected == []
            assert verdict.stale == [], verdict.stale[:5]
            assert verdict.worst <= STALENESS_BOUND
            assert verdict.moves == [], verdict.moves[:5]
            assert verdict.refused == []
            assert min(counted) > 2_000, counted
            assert checks >= 3
            assert sum(episodes.values()) >= 10

            # At the end: every user's pod is the same from both gateways and the stored link.
            users = [f"user-{i}" for i in range(USERS)]
            from_python = {uid: await python.compute_linked_pod(NS, uid, SVC) for uid in users}
            from_go = {uid: int(answer) for uid, answer, _, _ in await go.ask(users)}
            grouped = await python.batch_get_linked_pod(NS, users, SVC)
            stored = {uid: pod for pod, uids in grouped.items() for uid in uids}
            assert from_go == from_python == stored
            agree, per_pod = await counts_agree(redis, table, (NS, SVC), PODS)
            assert agree
            assert sum(per_pod) == USERS
    finally:
        await go.close(10)
