"""``python -m bench.mixed [--duration 300] [--seed N]`` (``make chaos ARGS=--mixed``): release
0.1.0 and this one side by side on one route under churn, longer than the test does it.

The run of ``tests/e2e/test_mixed_releases.py`` (``stateful_route.testing.mixed``) on a private
redis-server and the emulated cluster: gateways of both releases, pods of both releases acting
on the same guests, and by default the operator upgraded from 0.1.0, rolled back and upgraded
again (a quarter of the run each). Prints what it did and every problem found; exits 1 on any.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stateful_route.core import logs
from stateful_route.store.connection import AnyRedis, connect
from stateful_route.testing.local_redis import PrivateRedis
from stateful_route.testing.mixed import MixedRun, mixed_releases
from stateful_route.testing.releases import PREVIOUS
from stateful_route.testing.sim import emulated_cluster

USERS = 20_000
OPERATORS = f"{PREVIOUS},N,{PREVIOUS},N"  # upgraded, rolled back, upgraded again
console = Console()


async def mixed(duration: float, seed: int, users: int, operators: list[str]) -> MixedRun:
    """One run on its own Redis and emulated cluster."""
    server = PrivateRedis().start()
    clients: list[AnyRedis] = []

    def make_redis() -> AnyRedis:
        clients.append(connect(server.url))
        return clients[-1]

    try:
        with tempfile.TemporaryDirectory(prefix="stateful-route-mixed-") as folder:
            async with emulated_cluster(Path(folder)) as cluster:
                return await mixed_releases(
                    cluster, make_redis(), make_redis, server.url, f"m{secrets.token_hex(4)}", Path(folder),
                    seed=seed, seconds=duration, users=users, pause=0.05, operators=operators,
                )  # fmt: skip
    finally:
        for client in clients:
            await client.aclose()
        server.cleanup()


def run(duration: float, seed: int, users: int, operators: str = OPERATORS) -> int:
    """Run, print, and return the exit status (1 on any problem)."""
    schedule = operators.split(",")
    if not schedule or set(schedule) - {PREVIOUS, "N"}:
        raise typer.BadParameter(f"--operators lists {PREVIOUS} and N, got {operators!r}")
    logs.configure("kv", level=logging.ERROR)
    console.print(
        f"mixed releases: {duration:.0f} s, seed {seed}, {users} users, operators {' -> '.join(schedule)}",
        highlight=False,
    )
    report = asyncio.run(mixed(duration, seed, users, schedule))
    console.print(report.summary(), highlight=False)
    for action, count in sorted(report.actions.items()):
        console.print(f"  {action}: {count}", highlight=False)
    kinds = Counter(problem.split("(")[0].split(":")[0] for problem in report.problems)
    console.print(f"{len(report.problems)} problems {dict(kinds)}", highlight=False)
    for line in report.problems[:20]:
        console.print(f"[red]problem:[/] {line}", highlight=False)
    return 1 if report.problems else 0


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    duration: Annotated[float, typer.Option(help="Seconds of churn (the operator upgraded half way).")] = 300,
    seed: Annotated[
        int, typer.Option(help="Seeds the churn, the pods' actions and the users asked.")
    ] = 20261208,
    users: Annotated[int, typer.Option(help="Users placed before the churn starts.")] = USERS,
    operators: Annotated[
        str, typer.Option(help=f"The route's operator in turn, each for an equal share ({PREVIOUS} or N).")
    ] = OPERATORS,
) -> None:
    """Release 0.1.0 and this one on one route under churn; exit 1 on any problem."""
    raise typer.Exit(run(duration, seed, users, operators))


if __name__ == "__main__":
    app()
