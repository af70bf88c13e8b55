"""Stopping the route mirror's workers retrieves how each ended: a worker whose cancellation
turned into an error (redis-py under ``asyncio.timeout`` whose deadline fell at the same moment
turns it into TimeoutError, so StoreUnavailable) left asyncio logging "Task exception was never
retrieved" when the gateway closed (seen at the end of the mixed-releases runs)."""

from __future__ import annotations

import asyncio
import gc

from stateful_route import StoreUnavailable
from stateful_route.gateway import mirror


async def test_a_worker_ending_in_an_error_when_stopped_leaves_nothing_unretrieved():
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))

    async def worker() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise StoreUnavailable("redis unavailable: TimeoutError") from None

    try:
        tasks = {asyncio.create_task(worker()), asyncio.create_task(worker())}
        await asyncio.sleep(0)
        await mirror._stopped(tasks)
        assert all(task.done() for task in tasks)
        del tasks
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
