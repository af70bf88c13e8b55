"""Handing every user of a pod off to other pods before it stops (a preStop hook's job)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import NamedTuple

from stateful_route.store import keys
from stateful_route.store.links import LinkStore

__all__ = ["Before", "HandOffResult", "first_error", "hand_off_users"]

log = logging.getLogger("stateful_route.pod")

# Called with a user's id before its link moves: the place to persist or push its state.
Before = Callable[[str], Awaitable[object]]


class HandOffResult(NamedTuple):
    """What ``ServerDriver.hand_off_all`` did."""

    moved: int  # links moved to another pod
    failed: int  # users whose ``before`` callback raised: their link stayed here
    left: int  # users linked here when it finished, counted in Redis (failed and interrupted ones included)
    waiting: int = 0  # of ``left``, users only outdated pods could take (see hand_off_users)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception a task group collected (nested groups flattened), so a worker's fault
    reaches the caller as the typed error it raised (StoreUnavailable/StoreError), not a group."""
    first = group.exceptions[0]
    return first_error(first) if isinstance(first, BaseExceptionGroup) else first


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
    then moving its link, until no user is left here, a pass changes nothing, or the loop clock
    reaches ``deadline``. A user who finds no other pod available is retried every
    ``retry_every`` seconds (``before`` is not called again); users linked here meanwhile are
    handed off by the next pass, and so is a user found gone (unlinked or moved meanwhile) who is
    linked here again (``before`` is called again: its state here is new). A pass in which only
    outdated pods could take users (early in a rolling update) is the last: no updated pod comes
    before this one goes (a StatefulSet replaces its pods one at a time), so its users wait for
    one once it has gone (``waiting``; the operator evicts them).

    ``deadline`` bounds the call: at it, workers stop taking users and a ``before`` callback in
    flight is cancelled, that user counted as ``left``; a link move in flight finishes (within the
    store's timeout). ``left`` is counted in Redis at the end (within the store's timeout), so it
    includes users linked here while the passes ran. A Redis fault raises
    StoreUnavailable/StoreError (the other workers are cancelled)."""
    loop = asyncio.get_running_loop()
    prepared: set[str] = set()
    failed: set[str] = set()
    waiting: set[str] = set()  # users only outdated pods could take, in the last pass
    moved = 0

    async def one(uid: str) -> bool | None:
        """Hand one user off: True when moved (or its callback failed or was cut off), False when
        no other pod was available, None when it was not linked here (gone)."""
        nonlocal moved
        if uid not in prepared:
            if before is not None:
                try:
                    async with asyncio.timeout_at(deadline):
                        try:
                            await before(uid)
                        except Exception as exc:  # the pod's own code: its user stays, the others go on
                            failed.add(uid)
                            log.warning(
                                "event=hand_off_callback_failed pod=%d uid=%r error=%r", pod, uid, str(exc)
                            )
                            return True
                except TimeoutError:  # cut off at the deadline: the user stays (``left``)
                    return True
            prepared.add(uid)
        done = await store.hand_off(route_keys, uid, pod)
        if done is None:  # moved, removed or expired meanwhile: if linked here again, a new user
            prepared.discard(uid)
            return None
        if done.pod is None:
            if done.outdated:
                waiting.add(uid)
            return False
        moved += 1
        return True

    async def worker(shared: Iterator[str], outcome: list[int]) -> None:
        for uid in shared:
            if loop.time() >= deadline:  # no new user after the deadline
                return
            placed = await one(uid)
            if placed is False:
                outcome[0] += 1
            elif placed:
                outcome[1] += 1

    async def passes() -> None:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    pending = [uid async for uid in users() if uid not in failed]
            except TimeoutError:
                return
            if not pending:
                return
            found = iter(pending)  # one shared iterator: each user goes to exactly one worker
            outcome = [0, 0]  # users who found no other pod; users moved, failed or cut off
            waiting.clear()
            try:
                async with asyncio.TaskGroup() as workers:
                    for _ in range(min(concurrency, len(pending))):
                        workers.create_task(worker(found, outcome))
            except BaseExceptionGroup as group:  # a fault in one worker cancelled the others
                raise first_error(group) from None
            # Every user gone: nothing here to hand off (a stale index entry must not loop).
            if loop.time() >= deadline or waiting or not any(outcome):
                return
            if outcome[0]:
                await asyncio.sleep(min(retry_every, deadline - loop.time()))

    await passes()
    # Counted in Redis, not from the listings: a user linked here after the last one is left too.
    left = await store.count_linked(route_keys, pod)
    return HandOffResult(moved=moved, failed=len(failed), left=left, waiting=min(len(waiting), left))
