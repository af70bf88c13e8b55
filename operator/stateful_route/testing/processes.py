"""Ending the subprocesses that tests start: a bounded wait for the exit, then SIGKILL."""

from __future__ import annotations

import asyncio

__all__ = ["wait_or_kill"]


async def wait_or_kill(process: asyncio.subprocess.Process, within: float) -> None:
    """Wait until ``process`` exits; if it has not within ``within`` seconds (TimeoutError, raised
    after) or the wait is cancelled, kill it and reap it, so that no process outlives the caller."""
    try:
        await asyncio.wait_for(process.wait(), within)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
