"""kopf's "succeeded" line of the routine handlers (every pod and StatefulSet event, every tick) is
logged at DEBUG, not INFO; the rare handlers' lines, failures and our own event lines stay."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stateful_route import RouteTable
from stateful_route.controller.handler_logs import RoutineSuccesses
from stateful_route.controller.handlers import ROUTINE
from stateful_route.testing.sim import operator
from tests.e2e.test_route_lifecycle import wait_for_table


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def _run(cluster, redis, redis_url, prefix) -> None:
    """Ticks every 0.1 s, a pod made NotReady and Ready again, and the status patches they cause."""
    await cluster.start(3)
    table = RouteTable(redis, prefix=prefix)
    async with operator(cluster, redis_url, prefix, reconcile_interval=0.1, status_interval=0.1):
        await wait_for_table(table, [0, 1, 2])
        await cluster.set_ready(1, False)
        await wait_for_table(table, [0, 2])
        await cluster.set_ready(1, True)
        await wait_for_table(table, [0, 1, 2])
        await asyncio.sleep(0.5)


async def test_routine_successes_are_not_logged_at_info(cluster, redis, redis_url, prefix, caplog):
    caplog.set_level(logging.INFO)
    await _run(cluster, redis, redis_url, prefix)
    info = _lines(caplog, logging.INFO)
    assert not [line for line in info if line.endswith("succeeded.") and line.startswith(ROUTINE)]
    assert not _lines(caplog, logging.DEBUG)  # dropped, not merely relabelled
    assert "Handler 'route_changed' succeeded." in info  # a route created: still said
    assert any(line.startswith("event=operator_start") for line in info)


async def test_with_debug_on_routine_successes_are_logged_at_debug(cluster, redis, redis_url, prefix, caplog):
    caplog.set_level(logging.DEBUG)
    await _run(cluster, redis, redis_url, prefix)
    debug = _lines(caplog, logging.DEBUG)
    for handler in ROUTINE:  # every name is one kopf really logs (a renamed handler fails here)
        assert f"{handler} succeeded." in debug, handler
    assert not [line for line in _lines(caplog, logging.INFO) if line.startswith(ROUTINE)]


def test_only_the_routine_success_lines_are_touched():
    routine = RoutineSuccesses(["Timer 'route_tick'"])

    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 0, msg, None, None)

    for kept in (
        record(logging.INFO, "Handler 'route_changed' succeeded."),
        record(
            logging.ERROR, "Timer 'route_tick' failed with an exception and will try again in 1 seconds: x"
        ),
        record(logging.WARNING, "Timer 'route_tick' succeeded."),
        record(logging.INFO, "event=evicted namespace=ns route=r pod=1 removed=2 rebound=2 reason='gone'"),
    ):
        level = kept.levelno
        assert routine.filter(kept)
        assert kept.levelno == level
    quiet = record(logging.INFO, "Timer 'route_tick' succeeded.")
    routine.filter(quiet)
    assert quiet.levelno == logging.DEBUG
    assert quiet.levelname == "DEBUG"
