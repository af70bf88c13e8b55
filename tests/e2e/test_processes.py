"""wait_or_kill: a process that exits in time is only waited for; one that does not is killed
and reaped, and the caller hears of the timeout."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from stateful_route.testing.processes import wait_or_kill


async def python(code: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-c", code)


async def test_a_process_that_exits_in_time_is_waited_for() -> None:
    process = await python("raise SystemExit(3)")
    await wait_or_kill(process, 10)
    assert process.returncode == 3


async def test_a_process_that_outlives_the_wait_is_killed_and_reaped() -> None:
    process = await python("import time; time.sleep(60)")
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError):
        await wait_or_kill(process, 0.3)
    assert process.returncode == -signal.SIGKILL
    assert asyncio.get_running_loop().time() - started < 10
