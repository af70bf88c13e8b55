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
    left: int  # users still linked here when it finished (failed and interrupted ones included)
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
    then moving its link, until no user is left here or the loop clock reaches ``deadline``. A
    user who finds no other pod available is retried every ``retry_every`` seconds (``before`` is
    not called again); users linked here meanwhile are handed off by the next pass. A pass in
    which only outdated pods could take users (early in a rolling update) is the last: no
    updated pod comes before this one goes (a StatefulSet replaces its pods one at a time), so
    its users wait for one once it has gone (``waiting``; the operator evicts them).

    ``deadline`` bounds the call: at it, workers stop taking users and a ``before`` callback in
    flight is cancelled, that user counted as ``left``; a link move in flight finishes (within the
    store's timeout) so ``left`` stays exact. When not even one listing finished in time, ``left``
    is counted in Redis (within the store's timeout). A Redis
    fault raises StoreUnavailable/StoreError (the other workers are cancelled)."""
    loop = asyncio.get_running_loop()
    prepared: set[str] = set()
    failed: set[str] = set()
    gone: set[str] = set()  # not linked here when their turn came (a stale index entry stays out)
    here: set[str] = set()  # users last seen linked here and not moved since: ``left`` at the end
    waiting: set[str] = set()  # users only outdated pods could take, in the last pass
    listed = False  # whether one listing of users() completed before the deadline
    moved = 0

    async def one(uid: str) -> bool:
        """Hand one user off; False when no other pod was available."""
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
        if done is None:  # moved, removed or expired meanwhile: nothing to do
            gone.add(uid)
            here.discard(uid)
            return True
        if done.pod is None:
            if done.outdated:
                waiting.add(uid)
            return False
        moved += 1
        here.discard(uid)
        return True

    async def worker(shared: Iterator[str], stranded: list[int]) -> None:
        for uid in shared:
            if loop.time() >= deadline:  # no new user after the deadline
                return
            if not await one(uid):
                stranded[0] += 1

    async def passes() -> None:
        nonlocal listed
        while True:
            seen: set[str] = set()
            try:
                async with asyncio.timeout_at(deadline):
                    async for uid in users():
                        seen.add(uid)
                        here.add(uid)  # an interrupted listing still counts whom it found
            except TimeoutError:
                return
            here.intersection_update(seen)  # moved away by someone else meanwhile: not left
            listed = True
            pending = [uid for uid in seen if uid not in failed and uid not in gone]
            if not pending:
                return
            found = iter(pending)  # one shared iterator: each user goes to exactly one worker
            stranded = [0]  # users who found no other pod in this pass
            waiting.clear()
            try:
                async with asyncio.TaskGroup() as workers:
                    for _ in range(min(concurrency, len(pending))):
                        workers.create_task(worker(found, stranded))
            except BaseExceptionGroup as group:  # a fault in one worker cancelled the others
                raise first_error(group) from None
            if loop.time() >= deadline or waiting:
                return
            if stranded[0]:
                await asyncio.sleep(min(retry_every, deadline - loop.time()))

    await passes()
    if not listed:  # cut off before knowing whom the pod holds: count them (one store timeout)
        return HandOffResult(moved=moved, failed=len(failed), left=await store.count_linked(route_keys, pod))
    here.difference_update(gone)
    return HandOffResult(moved=moved, failed=len(failed), left=len(here), waiting=len(waiting & here))
