"""BENCHMARKS.md: the machine, the command, and the table of figures."""

from __future__ import annotations

import datetime
import os
import platform
from importlib.metadata import version

from bench.figures import Row

# Everything after this line in BENCHMARKS.md is written by hand and kept when it is regenerated.
NOTES = "<!-- analysis: kept across runs -->\n"
HEADER = "| figure | ours | original | limit | ratio | target | met? |\n|---|---|---|---|---|---|---|\n"


def machine(redis_version: str) -> str:
    """One paragraph describing where the figures were measured."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, redis-py {version('redis')} (hiredis "
        f"{version('hiredis')}), Redis {redis_version} on loopback, one process (asyncio)."
    )


def mark(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def markdown(rows: list[Row], *, command: str, about: str) -> str:
    """The whole BENCHMARKS.md."""
    when = datetime.date.today().isoformat()
    table = "".join(
        f"| {r.figure} | {r.ours} | {r.original} | {r.limit} | {r.ratio} | {r.target} | {mark(r.met)} |\n"
        for r in rows
    )
    return (
        "# Benchmarks\n\n"
        f"Measured {when} with `{command}` (every figure in one run, against the same Redis).\n\n"
        f"Machine: {about}\n\n"
        '"original" is `bench/original.py`, a faithful port of the client this project replaces '
        "(joined-string TTL cache, best pod from the client's own view of reported loads, plain SET "
        'without atomic placement, one round trip per user in batches). "limit" is the physical '
        "limit measured in the same run: a bare dict lookup, a single-connection EVALSHA of a script "
        "that does nothing (16 connections for the concurrent row), pipelined MGET of 1,000 keys per "
        "command. Ratios are ours ÷ the reference named in the target.\n\n"
        f"{HEADER}{table}"
    )
