"""kopf's "succeeded" line of routine handler runs, at DEBUG instead of INFO.

kopf logs ``Handler 'pod_changed' succeeded.`` at INFO after every run of every handler, and has
no setting for it. The routine handlers run on every pod event and every second per route (the
tick): their lines were most of the log, and formatting and writing each cost more than a pod
event that changes nothing (BENCHMARKS.md, figure 12). Failures, retries, the other handlers'
lines and our own ``event=`` lines are untouched; with DEBUG on, the routine lines come back at
DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterator

__all__ = ["RoutineSuccesses", "routine_successes_at_debug"]

# The logger kopf writes every handler's outcome to (kopf._core.actions.loggers).
KOPF_OBJECTS = logging.getLogger("kopf.objects")


class RoutineSuccesses(logging.Filter):
    """Turns the INFO "succeeded" lines of ``handlers`` (kopf's names: ``Handler 'pod_changed'``,
    ``Timer 'route_tick'``) into DEBUG lines, dropped unless the logger is enabled for DEBUG."""

    def __init__(self, handlers: Collection[str]) -> None:
        super().__init__()
        self._lines = frozenset(f"{handler} succeeded." for handler in handlers)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.msg not in self._lines:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return KOPF_OBJECTS.isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def routine_successes_at_debug(handlers: Collection[str]) -> Iterator[None]:
    """``RoutineSuccesses`` on kopf's object logger while the block runs."""
    routine = RoutineSuccesses(handlers)
    KOPF_OBJECTS.addFilter(routine)
    try:
        yield
    finally:
        KOPF_OBJECTS.removeFilter(routine)
