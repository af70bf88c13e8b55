"""The demo's users: arriving, reconnecting and leaving through several gateways, while the
pods report their load."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Mapping

from stateful_route import ClientDriver, NoAvailablePod, PodPending, ServerDriver
from stateful_route.demo.summary import Summary
from stateful_route.testing.sim import NS, ROUTE

__all__ = ["FOLLOWED", "Traffic"]

# The first user stays for the whole run, so that `stateful-route lookup` can follow its link as
# pods are drained, deleted and replaced.
FOLLOWED = "user-0"


class Traffic:
    """Users arriving, reconnecting and leaving through several gateways."""

    def __init__(self, gateways: list[ClientDriver], servers: dict[int, ServerDriver], target: int) -> None:
        self.gateways = gateways
        self.servers = servers
        self.target = target
        self.online: list[str] = []  # users with a session, for picking one at random
        self.where: dict[str, int] = {}  # uid -> the pod it was last told
        self.position: dict[str, int] = {}  # uid -> its index in ``online``
        self.created = 0
        self.took_ns: list[int] = []
        self.sessions: Counter[int] = Counter()  # lookups per pod since the last load report
        self.summary = Summary()
        self.moves: Counter[str] = Counter()  # uid -> times its pod changed, as its answers show
        self.rollout_moves: Counter[str] = Counter()  # uid -> times the rolling update changed its pod
        # uid -> its pod as the rolling update goes: its link when the update began, then each
        # answer (None before the update begins; see ``rollout_begins``)
        self.rollout_pods: dict[str, int] | None = None
        self.in_flight: Counter[str] = Counter()  # uid -> its lookups under way
        self.stop = asyncio.Event()

    def all_users(self) -> list[str]:
        """Every user the demo has created (those who left have no link)."""
        return [f"user-{i}" for i in range(self.created)]

    async def gateway(self, client: ClientDriver, rng: random.Random) -> None:
        """One gateway's traffic, about 2,000 calls a second."""
        # Stopped by a flag, not by cancellation: redis-py can swallow a cancellation in flight.
        while not self.stop.is_set():
            for _ in range(20):
                await self._one(client, rng)
            await asyncio.sleep(0.01)

    async def _one(self, client: ClientDriver, rng: random.Random) -> None:
        roll = rng.random()
        if (len(self.online) < self.target and roll < 0.7) or not self.online:
            uid = f"user-{self.created}"  # arrives
            self.created += 1
        elif roll < 0.95:
            uid = self.online[rng.randrange(len(self.online))]  # reconnects
        else:
            await self.leave(self.online[rng.randrange(len(self.online))])
            return
        await self.look_up(client, uid)

    async def look_up(self, client: ClientDriver, uid: str) -> None:
        """One lookup of ``uid`` through ``client``, counted: a placement, a move, or neither."""
        started = time.perf_counter_ns()
        self.in_flight[uid] += 1
        try:
            pod = await client.compute_linked_pod(NS, uid, ROUTE)
        except PodPending:  # its pod is being replaced: it waits for the new revision
            self.summary.pod_pending += 1
            return
        except NoAvailablePod:
            self.summary.no_available_pod += 1
            return
        except Exception as exc:  # reported in the summary: the demo fails loudly, not silently
            self.summary.errors.append(f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.in_flight[uid] -= 1
            if not self.in_flight[uid]:
                del self.in_flight[uid]
        self.took_ns.append(time.perf_counter_ns() - started)
        self.summary.lookups += 1
        self.sessions[pod] += 1
        if uid not in self.where:
            self.summary.users_placed += 1
            self.position[uid] = len(self.online)
            self.online.append(uid)
        elif self.where[uid] != pod:
            self.moves[uid] += 1
        if self.rollout_pods is not None:
            if self.rollout_pods.get(uid, pod) != pod:
                self.rollout_moves[uid] += 1
            self.rollout_pods[uid] = pod
        self.where[uid] = pod

    async def rollout_begins(self) -> None:
        """Count the rolling update's moves from here, from each user's link now: a user's last
        answer may be older than its link (a user rebound off the deleted pod who has not looked
        up since), and the move it has yet to see is not the rolling update's."""
        stored = await self.gateways[0].batch_get_linked_pod(NS, self.all_users(), ROUTE)
        self.rollout_pods = {uid: pod for pod, uids in stored.items() for uid in uids}

    def rollout_ends(self, linked: Mapping[str, int]) -> None:
        """Count the last move of users whose link (``linked``: every stored link now) changed
        after their last answer: the count does not depend on when users happen to look up."""
        for uid, pod in (self.rollout_pods or {}).items():
            if linked.get(uid, pod) != pod:
                self.rollout_moves[uid] += 1

    async def leave(self, uid: str) -> None:
        """The user ends its session: it goes offline for good and its pod drops its link. Not
        while a lookup of it is under way (it would leave mid-request, and that lookup's answer
        would enrol it again as a new user, whose next placement would count as a move)."""
        if self.in_flight[uid] or uid == FOLLOWED:
            return
        index = self.position.pop(uid)
        last = self.online.pop()
        if last != uid:  # swap-remove keeps picking O(1)
            self.online[index] = last
            self.position[last] = index
        pod = self.where.pop(uid)
        server = self.servers.get(pod)
        if server is not None:
            with contextlib.suppress(Exception):  # the pod may be gone; its link was evicted then
                await server.remove_linked_pod_with_id(uid, pod)

    async def report_loads(self) -> None:
        """What each pod does every second: report its load (sessions served, ÷100)."""
        while not self.stop.is_set():
            await asyncio.sleep(1)
            counts, self.sessions = self.sessions, Counter()
            for index, server in list(self.servers.items()):
                with contextlib.suppress(Exception):
                    await server.set_load_state(counts.get(index, 0) // 100)
