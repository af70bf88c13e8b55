"""Handing every user of a pod off to other pods before it stops (a preStop hook's job)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import NamedTuple

from stateful_route.store import keys
from stateful_route.store.links import LinkStore

__all__ = ["Before", "HandOffResult", "hand_off_users"]

log = logging.getLogger("stateful_route.pod")

# Called with a user's id before its link moves: the place to persist or push its state.
Before = Callable[[str], Awaitable[object]]


class HandOffResult(NamedTuple):
    """What ``ServerDriver.hand_off_all`` did."""

    moved: int  # links moved to another pod
    failed: int  # users whose ``before`` callback raised: their link stayed here
    left: int  # users still linked here when it finished (failed ones included)


async def hand_off_users(
    store: LinkStore,
    route_keys: keys.RouteKeys,
    pod: int,
    *,
    users: Callable[[], AsyncIterator[str]],
    before: Before | None,
    concurrency: int,
    deadline: float,
    retry_every: float,
) -> HandOffResult:
    """Pass over ``users()`` with ``concurrency`` workers, calling ``before(uid)`` once per user and
    then moving its link, until no user is left here or the loop clock reaches ``deadline``. A
    user who finds no other pod available is retried every ``retry_every`` seconds (``before`` is
    not called again); users linked here meanwhile are handed off by the next pass."""
    loop = asyncio.get_running_loop()
    prepared: set[str] = set()
    failed: set[str] = set()
    gone: set[str] = set()  # not linked here when their turn came (a stale index entry stays out)
    moved = 0

    async def one(uid: str) -> bool:
        """Hand one user off; False when no other pod was available."""
        nonlocal moved
        if uid not in prepared:
            if before is not None:
                try:
                    await before(uid)
                except Exception as exc:  # the pod's own code: its user stays, the others go on
                    failed.add(uid)
                    log.warning("event=hand_off_callback_failed pod=%d uid=%r error=%r", pod, uid, str(exc))
                    return True
            prepared.add(uid)
        done = await store.hand_off(route_keys, uid, pod)
        if done is None:  # moved, removed or expired meanwhile: nothing to do
            gone.add(uid)
            return True
        if done.pod is None:
            return False
        moved += 1
        return True

    while True:
        pending = [uid async for uid in users() if uid not in failed and uid not in gone]
        if not pending:
            break
        found = iter(pending)  # one shared iterator: each user goes to exactly one worker
        outcomes = [0]  # users stranded in this pass

        async def worker(shared: Iterator[str], stranded: list[int]) -> None:
            for uid in shared:
                if not await one(uid):
                    stranded[0] += 1

        async with asyncio.TaskGroup() as workers:
            for _ in range(min(concurrency, len(pending))):
                workers.create_task(worker(found, outcomes))
        stranded = outcomes[0]
        if loop.time() >= deadline:
            break
        if stranded:
            await asyncio.sleep(min(retry_every, max(0.0, deadline - loop.time())))
    left = sum([1 async for _ in users()])
    return HandOffResult(moved=moved, failed=len(failed), left=left)
