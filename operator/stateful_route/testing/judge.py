"""Judging gateways' answers under churn and faults against the routability Redis published.

Shared by the churn test and the chaos run. The promise judged: no answer names a pod that had
been unroutable for more than ``bound`` seconds when the call began; a user's answer changes
only after the pod it left became unroutable (never on two routable pods at once); every error
is a typed one; NoAvailablePod only while no pod is routable (PodPending, a user waiting a
bounded time for a pod of a rollout's new revision, is counted apart); per-pod link counts equal
the links.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis import exceptions as redis_errors

from stateful_route import NoAvailablePod, PodPending, RouteTable, StatefulRouteError
from stateful_route.store.changes import parse
from stateful_route.store.connection import AnyRedis

__all__ = ["COUNT_LINKS", "Findings", "Gateway", "Timeline", "Verdict", "ask", "counts_agree", "observe"]

# Counts links per pod from the link keys themselves and from every shard of the per-pod sets
# (found by name, not through the store's own index), atomically. A temporary link's key expires
# by Redis's clock frozen at its script's start, its shard entry by the script's TIME, up to a
# millisecond later, and this script reads TIME after Redis froze its own: so a link expiring
# within EDGE ms of now is counted on both sides as its key says (never judged by the ms).
COUNT_LINKS = """
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local EDGE = 50
local counted, edge = {}, {}
for _, key in ipairs(redis.call('KEYS', ARGV[1] .. '*')) do
  local pod = string.match(redis.call('GET', key) or '', '^(%d+)')
  if pod then
    counted[pod] = (counted[pod] or 0) + 1
    local expires = redis.call('PEXPIRETIME', key)
    if expires >= 0 and expires < ms + EDGE then edge[pod] = (edge[pod] or 0) + 1 end
  end
end
local out = {}
for i = 0, tonumber(ARGV[3]) do
  local p = tostring(i)
  local indexed = edge[p] or 0
  for _, shard in ipairs(redis.call('KEYS', ARGV[2] .. p .. ':*')) do
    indexed = indexed + redis.call('ZCOUNT', shard, ms + EDGE + 5, '+inf')
    for _, uid in ipairs(redis.call('ZRANGEBYSCORE', shard, ms, '(' .. (ms + EDGE + 5))) do
      -- near its expiry: counted here only if its link names this pod and is not at the edge
      local key = ARGV[1] .. uid
      local pod = string.match(redis.call('GET', key) or '', '^(%d+)')
      local expires = redis.call('PEXPIRETIME', key)
      if pod == p and (expires < 0 or expires >= ms + EDGE) then indexed = indexed + 1 end
    end
  end
  out[#out + 1] = counted[p] or 0
  out[#out + 1] = indexed
end
return out
"""


class Gateway(Protocol):
    """What ``ask`` asks: a ClientDriver, or a gateway of another release in a subprocess."""

    async def compute_linked_pod(self, ns: str, uid: str, service: str) -> int: ...


@dataclass
class Timeline:
    """When each of ``pods`` pods stopped and started being routable, as read from Redis."""

    pods: int
    since: dict[int, float] = field(default_factory=dict)  # pod -> unroutable since
    episodes: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # closed ones
    gaps: int = 0  # times the observer lost its subscription and re-read the table
    # (from, to) of each time the observer could not hear changes: what happened then is unknown
    blind: list[tuple[float, float]] = field(default_factory=list)

    def update(
        self, routable: set[int] | frozenset[int], now: float, *, came_back_at: float | None = None
    ) -> None:
        """Record the routable set read at ``now``; pods found routable again are dated
        ``came_back_at`` when given (after a gap: when the observer last knew the table, and the
        time between is recorded as blind)."""
        if came_back_at is not None:
            self.blind.append((came_back_at, now))
        for pod in range(self.pods):
            if pod not in routable and pod not in self.since:
                self.since[pod] = now
            elif pod in routable and pod in self.since:
                began = self.since.pop(pod)
                self.episodes.setdefault(pod, []).append((began, max(began, came_back_at or now)))

    def unroutable_since(self, pod: int, at: float, until: float | None = None) -> float | None:
        """When ``pod`` became unroutable, if it was unroutable from ``at`` to ``until`` (a pod
        that came back during a call may rightly be its answer)."""
        until = at if until is None else until
        if pod in self.since and self.since[pod] <= at:
            return self.since[pod]
        return next((a for a, b in self.episodes.get(pod, []) if a <= at and until < b), None)

    def none_routable_at(self, at: float) -> bool:
        return all(self.unroutable_since(pod, at) is not None for pod in range(self.pods))

    def blind_between(self, start: float, end: float) -> bool:
        """Whether the observer was deaf to changes at some time from ``start`` to ``end``."""
        return any(a <= end and start <= b for a, b in self.blind)

    def unroutable_between(self, pod: int, start: float, end: float) -> bool:
        if pod in self.since and self.since[pod] <= end:
            return True
        return any(a <= end and b >= start for a, b in self.episodes.get(pod, []))


@dataclass
class Verdict:
    """What judging found so far; ``violations`` must be empty."""

    worst: float = 0.0  # worst staleness, seconds
    stale: list[str] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)
    moved_at: list[float] = field(default_factory=list)  # when each of ``moves`` was seen
    refused: list[float] = field(default_factory=list)  # NoAvailablePod while some pod was routable
    replaced: list[str] = field(default_factory=list)  # moves across a data-loss window (see settle)
    stale_across_loss: list[str] = field(default_factory=list)  # stale answers across one (see settle)
    unjudged: list[str] = field(default_factory=list)  # moves while the observer was deaf

    @property
    def violations(self) -> list[str]:
        refused = [f"NoAvailablePod at {at:.3f} while a pod was routable" for at in self.refused]
        return [*self.stale, *self.moves, *refused]


@dataclass
class Findings:
    """Every answer, judged against the timeline once it is complete: the observer may read a
    change from its socket after a client already acted on it, so judging at once would blame
    the client for the observer's lag. Long runs judge as they go (``settle``) and keep only
    answers not yet judged."""

    bound: float = 1.0
    answers: list[tuple[str, int, float, float]] = field(default_factory=list)  # uid, pod, start, end
    no_pod: list[float] = field(default_factory=list)  # when NoAvailablePod was raised
    errors: Counter[str] = field(default_factory=Counter)  # typed errors by kind (NoAvailablePod too)
    unexpected: list[str] = field(default_factory=list)
    longest_gap: float = 0.0  # longest time one asker went without an answer
    # PodPending: each user's first one not yet followed by an answer (uid -> when), and each
    # wait that ended in an answer (uid, seconds from that first PodPending to the answer)
    pending: dict[str, float] = field(default_factory=dict)
    waits: list[tuple[str, float]] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    judged: int = 0
    _last: dict[str, tuple[int, float]] = field(default_factory=dict)  # uid -> (pod, when) last fresh

    @property
    def count(self) -> int:
        """Answers received, judged or not."""
        return self.judged + len(self.answers)

    def judge(self, timeline: Timeline, data_loss: Sequence[tuple[float, float]] = ()) -> Verdict:
        """Judge every answer (the timeline is complete)."""
        return self.settle(timeline, math.inf, data_loss)

    def settle(
        self, timeline: Timeline, before: float, data_loss: Sequence[tuple[float, float]] = ()
    ) -> Verdict:
        """Judge, in order, the answers and refusals that ended before ``before`` (the timeline
        must be complete up to then) and forget them: staleness beyond the bound, moves off a
        pod that stayed routable, and NoAvailablePod while a pod was routable. A move that
        overlaps one of the ``data_loss`` windows (a primary lost with writes it had not
        replicated, or two servers acting as primary) is reported apart, in ``replaced``, and so
        is an answer on a pod unroutable since before such a window ended (``stale_across_loss``);
        a move made while the observer was deaf to changes cannot be judged (``unjudged``)."""
        verdict, last = self.verdict, self._last
        done = 0
        for uid, pod, start, end in self.answers:
            if end >= before:
                break
            done += 1
            since = timeline.unroutable_since(pod, start, end)
            if since is not None:  # unroutable throughout the call
                stale = f"{uid} -> pod {pod} at {start:.3f}, unroutable for {start - since:.3f}s"
                if any(a <= end and since <= b for a, b in data_loss):
                    # The table write that made the pod unroutable may be what the primary lost:
                    # the promoted replica calls it routable until the operator writes it again.
                    if start - since > self.bound:
                        verdict.stale_across_loss.append(stale)
                    continue
                verdict.worst = max(verdict.worst, end - since)
                if start - since > self.bound:
                    verdict.stale.append(stale)
                continue
            previous = last.get(uid)
            if previous is not None and previous[0] != pod:
                left, when = previous
                if not timeline.unroutable_between(left, when, end):
                    move = f"{uid} moved {left} -> {pod} at {end:.3f} while {left} stayed routable"
                    lost = any(a <= end and when <= b for a, b in data_loss)
                    if lost:
                        verdict.replaced.append(move)
                    elif timeline.blind_between(when, end):  # unroutable meanwhile, unheard?
                        verdict.unjudged.append(move)
                    else:
                        verdict.moves.append(move)
                        verdict.moved_at.append(end)
            last[uid] = (pod, end)
        del self.answers[:done]
        self.judged += done
        due = [at for at in self.no_pod if at < before]
        self.no_pod = [at for at in self.no_pod if at >= before]
        verdict.refused += [at for at in due if not timeline.none_routable_at(at)]
        return verdict


class _Reconnects:
    """Whether the table must be re-read: at first, and after redis-py reconnected by itself
    (it keeps a weak reference to a bound method, hence a class)."""

    def __init__(self) -> None:
        self.happened = True

    async def heard(self, _connection: Any) -> None:
        self.happened = True


async def observe(
    redis: AnyRedis,
    timeline: Timeline,
    channel: str,
    stop: asyncio.Event,
    table: RouteTable,
    route: tuple[str, str],
) -> None:
    """Feed ``timeline`` from the change channel until ``stop``; survive faults by resubscribing
    and re-reading the table (changes published meanwhile were not heard). Each table change
    bumps the route's version once, so a version skipped means changes missed: the time since
    the last one heard is recorded as deaf too."""
    known_at = time.time()  # when the timeline last matched Redis
    heard = (0, known_at)  # the last table version known, and when Redis applied it
    while not stop.is_set():
        pubsub = redis.pubsub()
        resync = _Reconnects()
        try:
            await asyncio.wait_for(pubsub.subscribe(channel), 2)
            connection: Any = pubsub.connection  # redis-py reconnects it silently: hear of it
            if connection is not None:
                connection.register_connect_callback(resync.heard)
            while not stop.is_set():
                if resync.happened:
                    resync.happened = False
                    snapshot = await asyncio.wait_for(table.snapshot(*route), 2)
                    timeline.update(set(snapshot.routable), time.time(), came_back_at=known_at)
                    heard = (snapshot.version, time.time())
                message = await asyncio.wait_for(
                    pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2), 2
                )
                change = parse(message["data"]) if message is not None else None
                if change is not None and change.routable is not None and change.at is not None:
                    version, (last, last_at) = change.version or 0, heard
                    missed = last_at if version > last + 1 else None  # what came between: unknown
                    timeline.update(set(change.routable), change.at, came_back_at=missed)
                    heard = (version, change.at)
                if not resync.happened:  # else it reconnected in that wait: deaf since known_at
                    known_at = time.time()
        except (redis_errors.RedisError, OSError, TimeoutError, StatefulRouteError):
            timeline.gaps += 1
            await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(redis_errors.RedisError, OSError, TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), 2)


async def ask(
    client: Gateway,
    findings: Findings,
    rng: random.Random,
    stop: asyncio.Event,
    *,
    users: int,
    route: tuple[str, str],
    allowed: tuple[type[Exception], ...] = (),
    pause: float = 0.0,
) -> None:
    """Ask for random users' pods until ``stop``: answers, NoAvailablePod, PodPending waits,
    ``allowed`` errors by kind, and anything else as unexpected; ``pause`` seconds after every
    100 lookups (cached answers are fast: an asker that never pauses starves the processes it
    shares cores with)."""
    # Wall-clock time, the clock Redis stamps changes with (one machine, one clock). Stopped by a
    # flag, not by cancellation: redis-py 8.1 can swallow a cancellation in flight.
    namespace, service = route
    answered = time.time()
    while not stop.is_set():
        for uid in (f"user-{rng.randrange(users)}" for _ in range(100)):
            start = time.time()
            try:
                pod = await client.compute_linked_pod(namespace, uid, service)
            except PodPending:
                findings.errors["PodPending"] += 1
                findings.pending.setdefault(uid, start)
                continue
            except NoAvailablePod:
                findings.no_pod.append(start)
                findings.errors["NoAvailablePod"] += 1
                continue
            except allowed as exc:
                findings.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # a fault: do not spin
                continue
            except Exception as exc:  # anything else breaks the promise
                findings.unexpected.append(repr(exc))
                continue
            end = time.time()
            findings.answers.append((uid, pod, start, end))
            if (waiting := findings.pending.pop(uid, None)) is not None:
                findings.waits.append((uid, end - waiting))
            findings.longest_gap = max(findings.longest_gap, end - answered)
            answered = end
        await asyncio.sleep(pause)


async def counts_agree(
    redis: AnyRedis, table: RouteTable, route: tuple[str, str], pods: int
) -> tuple[bool, list[int]]:
    """Whether every pod's link count equals the links naming it; the per-pod link counts."""
    route_keys = table.keyring.route(*route)
    flat = await redis.eval(COUNT_LINKS, 0, route_keys.links, route_keys.pod_links, pods - 1)
    pairs = list(zip(flat[::2], flat[1::2], strict=True))
    return all(a == b for a, b in pairs), [a for a, _ in pairs]
