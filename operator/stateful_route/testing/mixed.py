"""Release N-1 (0.1.0) and N side by side on one route, under churn, judged as the churn test is.

The route's operator is first 0.1.0's (its own command), then, half way through, this release's
(stopped and started as a rolling update would: the new one migrates the route when it starts);
or any schedule of the two, e.g. upgraded, rolled back and upgraded again.
Gateways of both releases ask for random users all along; pods of both releases place, confirm
(persist), remove and hand off the same guests, each action by a release drawn at random; pods
flap, die, drain and shut down (``churning.churn``). Judged (``judge``): no answer of either
release names a pod unroutable for more than the bound when asked, no user moves off a pod that
stayed routable, NoAvailablePod only while no pod is routable, no untyped error, and Redis
calls timing out (StoreUnavailable: a starved machine) at most once per ``TIMEOUTS_PER``
answers; the per-pod
link counts equal the links every ``COUNT_EVERY`` seconds and at the end; nobody is lost, and
both releases' gateways name the same routable pod for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stateful_route import ClientDriver, NoAvailablePod, RouteTable, ServerDriver, StoreUnavailable
from stateful_route.store.connection import AnyRedis
from stateful_route.store.keys import RouteKeys, changes_channel
from stateful_route.testing.churning import churn
from stateful_route.testing.judge import (
    COUNT_LINKS,
    Findings,
    Gateway,
    Timeline,
    Verdict,
    ask,
    counts_agree,
    observe,
)
from stateful_route.testing.releases import PREVIOUS, PeerProcess, package_of, previous_operator, unpack
from stateful_route.testing.sim import NS, ROUTE, Cluster, operator

__all__ = ["MixedRun", "mixed_releases"]

STALENESS_BOUND = 1.0  # as in the churn test
COUNT_EVERY = 2.0
# Nothing faults Redis here, but on a starved 2-core machine a call can outlast the clients' 1 s
# timeout: a typed error, as promised, counted and bounded rather than forbidden.
TIMEOUTS_PER = 1_000
GUESTS = 200  # the users the pods act on (the askers' users only ever move off unroutable pods)
RELEASES = (PREVIOUS, "N")
POD_ACTIONS = ("place", "persist", "try", "remove", "remove_id", "handoff")


@dataclass
class MixedRun:
    """What one run did and found; ``problems`` must be empty."""

    seed: int
    answers: Counter[str] = field(default_factory=Counter)  # answers per release
    episodes: Counter[str] = field(default_factory=Counter)  # pod trouble by kind
    actions: Counter[str] = field(default_factory=Counter)  # "<release> <action> <outcome>"
    unexpected: list[str] = field(default_factory=list)  # untyped errors of pod actions
    count_checks: int = 0
    count_drift: list[str] = field(default_factory=list)  # per-pod counts that differed, when
    findings: Findings = field(default_factory=lambda: Findings(bound=STALENESS_BOUND))
    verdict: Verdict = field(default_factory=Verdict)
    end: list[str] = field(default_factory=list)  # what the end state got wrong
    timings: dict[str, float] = field(default_factory=dict)
    # the layout the route recorded at each change of operator and at the end
    layouts: list[int | None] = field(default_factory=list)

    @property
    def timeouts(self) -> int:
        """Calls of either release that raised StoreUnavailable (gateways' and pods')."""
        pods = sum(n for action, n in self.actions.items() if action.endswith(" StoreUnavailable"))
        return self.findings.errors["StoreUnavailable"] + pods

    @property
    def problems(self) -> list[str]:
        found = [
            *self.verdict.violations,
            *self.findings.unexpected,
            *self.unexpected,
            *self.count_drift,
            *self.end,
        ]
        if self.timeouts * TIMEOUTS_PER > max(self.findings.count, TIMEOUTS_PER):
            found.append(f"{self.timeouts} calls timed out for {self.findings.count} answers")
        return found

    def succeeded(self, release: str, action: str) -> int:
        """How many times ``release``'s pods did ``action`` (stored, done or moved a user)."""
        return sum(self.actions[f"{release} {action} {outcome}"] for outcome in ("stored", "done", "moved"))

    def summary(self) -> str:
        verdict, errors = self.verdict, self.findings.errors
        return (
            f"mixed releases (seed {self.seed}): answers {dict(self.answers)}; "
            f"{errors['NoAvailablePod']} NoAvailablePod; {self.timeouts} timeouts; "
            f"worst staleness {verdict.worst * 1000:.1f} ms "
            f"(bound {STALENESS_BOUND:.0f} s); {len(verdict.moves)} moves off a routable pod; "
            f"{len(verdict.stale)} stale; {len(verdict.refused)} refused; churn {dict(self.episodes)}; "
            f"pod actions {sum(self.actions.values())}; {self.count_checks} count checks, "
            f"{len(self.count_drift)} drifted; recorded layout {self.layouts}; timings {self.timings}"
        )


class Pods:
    """Each pod index's driver in either release: this release's in-process, 0.1.0's in ``peer``."""

    def __init__(self, redis: AnyRedis, peer: PeerProcess, prefix: str) -> None:
        self.peer, self.prefix, self.redis = peer, prefix, redis
        self.current: dict[int, ServerDriver] = {}

    def driver(self, pod: int) -> ServerDriver:
        if pod not in self.current:
            self.current[pod] = ServerDriver(
                self.redis, namespace=NS, service=ROUTE, pod_index=pod, prefix=self.prefix
            )
        return self.current[pod]

    async def act(self, release: str, action: str, pod: int, uid: str, keep_ms: int) -> str:
        """One pod's call; its outcome, in words both releases' answers map to."""
        if release == PREVIOUS:
            command = {
                "remove": ("remove", pod, uid, keep_ms),
                "remove_id": ("remove_id", pod, uid, pod, keep_ms),
            }.get(action, (action, pod, uid))
            answer = await self.peer.do(*command)
            return _outcome(action, answer)
        driver = self.driver(pod)
        if action == "persist":
            return _outcome(action, [str(await driver.set_linked_pod(uid))])
        if action == "try":
            done, holder = await driver.try_set_linked_pod(uid)
            return _outcome(action, ["1" if done else "0", str(holder)])
        if action == "remove":
            return _outcome(action, ["1" if await driver.remove_linked_pod(uid, keep_ms / 1000) else "0"])
        if action == "remove_id":
            removed = await driver.remove_linked_pod_with_id(uid, pod, keep_ms / 1000)
            return _outcome(action, ["1" if removed else "0"])
        moved = await driver.hand_off(uid)
        return _outcome(action, ["-" if moved is None else str(moved)])


def _outcome(action: str, answer: list[str]) -> str:
    if action in ("try", "remove", "remove_id"):
        return "done" if answer[0] == "1" else "refused"
    if action == "handoff":
        return "kept" if answer[0] in ("-", "None") else "moved"
    return "stored"


async def act_on_guests(
    run: MixedRun,
    redis: AnyRedis,
    gateways: dict[str, Callable[[str], Awaitable[int]]],
    pods: Pods,
    table: RouteTable,
    rng: random.Random,
    stop: asyncio.Event,
) -> None:
    """Pods of both releases acting on the same guests until ``stop``: each step a random guest,
    action and release; placing asks a gateway of a random release. A pod acts on a guest it
    holds (read from its link just before), as a pod acts on its own users."""
    keys = table.keyring.route(NS, ROUTE)
    while not stop.is_set():
        uid, action, release = f"guest-{rng.randrange(GUESTS)}", rng.choice(POD_ACTIONS), rng.choice(RELEASES)
        try:
            if action == "place":
                await gateways[release](uid)
                outcome = "stored"
            else:
                link = await redis.get(keys.link(uid))
                if link is None:
                    action, outcome = "place", "stored"
                    await gateways[release](uid)
                else:
                    text = link.decode() if isinstance(link, bytes) else link
                    pod = int(text.rstrip("p"))  # "3" temporary, "3p" persistent
                    outcome = await pods.act(release, action, pod, uid, rng.choice([0, 0, 500]))
        except NoAvailablePod:
            outcome = "NoAvailablePod"
        except StoreUnavailable:
            outcome = "StoreUnavailable"
        except Exception as exc:  # anything untyped breaks the promise
            run.unexpected.append(f"{release} {action} {uid}: {exc!r}")
            outcome = "error"
        run.actions[f"{release} {action} {outcome}"] += 1
        await asyncio.sleep(rng.uniform(0.0, 0.02))


async def check_counts(
    run: MixedRun, redis: AnyRedis, table: RouteTable, pods: int, stop: asyncio.Event
) -> None:
    """The per-pod counts against the links, atomically, every COUNT_EVERY seconds until ``stop``;
    a difference is recorded with each pod's (links, counted) and which users differ."""
    keys = table.keyring.route(NS, ROUTE)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), COUNT_EVERY)
        flat = await redis.eval(COUNT_LINKS, 0, keys.links, keys.pod_links, pods - 1)
        pairs = list(zip(flat[::2], flat[1::2], strict=True))
        run.count_checks += 1
        if any(a != b for a, b in pairs):
            run.count_drift.append(
                f"counts differ at {time.time():.3f}: {pairs}; {await _differing(redis, keys, pods)}"
            )


# The users whose link and unexpired shard entries disagree (pod of the link, pods indexing
# it), atomically: a diagnosis of a count difference, at most 10 users.
DIFFERING = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local linked, indexed = {}, {}
for _, key in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do
  linked[string.sub(key, #ARGV[1] + 1)] = string.match(redis.call('GET', key) or '', '^(%d+)')
end
for i = 0, tonumber(ARGV[3]) do
  for _, shard in ipairs(redis.call('KEYS', ARGV[2] .. i .. ':*')) do
    for _, uid in ipairs(redis.call('ZRANGEBYSCORE', shard, ms, '+inf')) do
      indexed[uid] = (indexed[uid] or '') .. i .. ' '
    end
  end
end
local out = {}
for uid, pod in pairs(linked) do
  if indexed[uid] ~= pod .. ' ' and #out < 20 then
    out[#out + 1] = uid .. ' ' .. pod .. ' [' .. (indexed[uid] or '') .. ']'
  end
end
for uid, pods in pairs(indexed) do
  if linked[uid] == nil and #out < 20 then out[#out + 1] = uid .. ' - [' .. pods .. ']' end
end
return out
"""


async def _differing(redis: AnyRedis, keys: RouteKeys, pods: int) -> list[str]:
    found = await redis.eval(DIFFERING, 0, keys.links, keys.pod_links, pods - 1)
    return [item.decode() for item in found]


async def mixed_releases(
    cluster: Cluster,
    redis: AnyRedis,
    make_redis: Callable[[], AnyRedis],
    redis_url: str,
    prefix: str,
    folder: Path,
    *,
    seed: int,
    seconds: float,
    users: int,
    pods: int = 6,
    pause: float = 0.0,
    operators: Sequence[str] = (PREVIOUS, "N"),
) -> MixedRun:
    """One run (see the module's docstring): ``seconds`` of churn, the route's operator the
    release named by each of ``operators`` in turn for an equal share of them (the default: 0.1.0,
    upgraded half way; a rollback is ``(PREVIOUS, "N", PREVIOUS, "N")``)."""
    run, rng, loop = MixedRun(seed), random.Random(seed), asyncio.get_running_loop()
    path = unpack(folder)
    table = RouteTable(redis, prefix=prefix)
    await cluster.start(pods, unroutableGraceSeconds=1, rebind="Eager")
    timeline = Timeline(pods)
    stop, done = asyncio.Event(), asyncio.Event()
    logs = [folder / f"operator-{i}-{release}.log" for i, release in enumerate(operators)]

    def operator_of(turn: int) -> contextlib.AbstractAsyncContextManager[object]:
        if operators[turn] == PREVIOUS:
            return previous_operator(cluster, redis_url, prefix, path, logs[turn])
        return operator(cluster, redis_url, prefix, reconcile_interval=0.5)

    async with contextlib.AsyncExitStack() as stack:
        began = loop.time()
        running = [contextlib.AsyncExitStack()]  # the operator of this turn
        stack.push_async_callback(lambda: running[0].aclose())
        await running[0].enter_async_context(operator_of(0))
        peer = await stack.enter_async_context(PeerProcess(path, redis_url, prefix, NS, ROUTE))
        current = await stack.enter_async_context(ClientDriver(make_redis(), namespace=NS, prefix=prefix))
        try:
            await _wait_for(table, pods, 60)
        except TimeoutError:
            raise RuntimeError(f"the first operator wrote no table; its log:\n{_tail(logs[0])}") from None
        run.timings["first operator up"] = round(loop.time() - began, 1)
        if peer.package is None or not peer.package.is_relative_to(path):  # else 0.1.0 never ran
            raise RuntimeError(f"the {PREVIOUS} peer runs the package at {peer.package}, not {path}")
        for uid in range(users):  # everyone placed first, by either release
            gateway = current if uid % 2 else peer
            await gateway.compute_linked_pod(NS, f"user-{uid}", ROUTE)
        observer = asyncio.create_task(
            observe(make_redis(), timeline, changes_channel(prefix, NS), stop, table, (NS, ROUTE))
        )
        askers = {
            PREVIOUS: Findings(bound=STALENESS_BOUND),
            "N": Findings(bound=STALENESS_BOUND),
        }
        both: list[tuple[str, Gateway]] = [(PREVIOUS, peer), ("N", current)]
        asking = [
            asyncio.create_task(ask(gateway, askers[name], random.Random(seed + i), stop, users=users,
                                    route=(NS, ROUTE), pause=pause, allowed=(StoreUnavailable,)))
            for i, (name, gateway) in enumerate(both)
        ]  # fmt: skip
        gateways: dict[str, Callable[[str], Awaitable[int]]] = {
            PREVIOUS: lambda uid: peer.compute_linked_pod(NS, uid, ROUTE),
            "N": lambda uid: current.compute_linked_pod(NS, uid, ROUTE),
        }
        background = [
            asyncio.create_task(act_on_guests(run, redis, gateways, Pods(make_redis(), peer, prefix), table,
                                              random.Random(seed ^ 0x5EED), stop)),
            asyncio.create_task(check_counts(run, redis, table, pods, done)),
        ]  # fmt: skip
        try:
            churning = asyncio.create_task(churn(cluster, rng, seconds, pods))
            for turn in range(1, len(operators)):
                await asyncio.sleep(seconds / len(operators))
                change = loop.time()
                run.layouts.append(await _layout(redis, table))
                # A rolling update of the operator's Deployment: the old replica stops, the new starts.
                await running[0].aclose()
                running[0] = contextlib.AsyncExitStack()
                await running[0].enter_async_context(operator_of(turn))
                run.timings[f"operator change {turn}"] = round(loop.time() - change, 1)
            run.episodes = await churning
            await _wait_for(table, pods, 20)  # settle: every pod back, the operator done evicting
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            done.set()
            await asyncio.gather(*asking, observer, *background)
        for name, findings in askers.items():
            run.answers[name] = findings.count
            run.findings.answers += findings.answers
            run.findings.no_pod += findings.no_pod
            run.findings.errors += findings.errors
            run.findings.unexpected += [f"{name}: {error}" for error in findings.unexpected]
        run.findings.answers.sort(key=lambda answer: answer[3])
        run.findings.no_pod.sort()
        run.verdict = run.findings.judge(timeline)
        run.layouts.append(await _layout(redis, table))
        await _check_end(run, redis, table, pods, users, peer, current)
    for turn, log in enumerate(logs):
        package = package_of(log) if operators[turn] == PREVIOUS else path
        if package is None or not package.is_relative_to(path):
            run.end.append(f"the {PREVIOUS} operator of turn {turn} ran {package}: {_tail(log)}")
    run.timings["total"] = round(loop.time() - began, 1)
    return run


def _tail(log: Path) -> str:
    return log.read_text()[-3000:] if log.exists() else "(no log)"


async def _layout(redis: AnyRedis, table: RouteTable) -> int | None:
    found = await redis.hget(table.keyring.route(NS, ROUTE).config, "layout")
    return None if found is None else int(found)


async def _wait_for(table: RouteTable, pods: int, within: float) -> None:
    """Until every pod is available (TimeoutError after ``within`` seconds)."""
    async with asyncio.timeout(within):
        while True:
            if sorted((await table.snapshot(NS, ROUTE)).available) == list(range(pods)):
                return
            await asyncio.sleep(0.05)


async def _check_end(
    run: MixedRun, redis: AnyRedis, table: RouteTable, pods: int, users: int, peer: PeerProcess,
    current: ClientDriver,
) -> None:  # fmt: skip
    """At the end: counts agree, nobody lost, both releases name the same routable pod for all."""
    agree, per_pod = await counts_agree(redis, table, (NS, ROUTE), pods)
    keys = table.keyring.route(NS, ROUTE)
    guests = await redis.exists(*(keys.link(f"guest-{i}") for i in range(GUESTS)))
    if not agree:
        run.end.append(f"counts differ from the links at the end: {per_pod}")
    if sum(per_pod) != users + guests:
        run.end.append(f"{sum(per_pod)} links for {users} users and {guests} guests")
    uids = [f"user-{i}" for i in range(users)]
    routable = (await table.snapshot(NS, ROUTE)).routable
    previous = {uid: await _answer(peer, uid) for uid in uids}
    now = {uid: await _answer(current, uid) for uid in uids}
    differ = [uid for uid in uids if previous[uid] != now[uid]]
    if differ:
        run.end.append(f"{len(differ)} users named differently by the releases, e.g. {differ[:3]}")
    if not set(now.values()) <= routable:
        run.end.append(f"answers name pods {set(now.values()) - routable} that are not routable")


async def _answer(gateway: Gateway, uid: str) -> int:
    """The gateway's answer, asked again after a timeout (see TIMEOUTS_PER)."""
    for _ in range(2):
        with contextlib.suppress(StoreUnavailable):
            return await gateway.compute_linked_pod(NS, uid, ROUTE)
    return await gateway.compute_linked_pod(NS, uid, ROUTE)
