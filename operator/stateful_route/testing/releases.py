"""The previous release (0.1.0) beside this one: its package unpacked from the test data, its
gateways and pod drivers as a subprocess (``stateful_route.testing.peer``), its operator as its
own ``stateful-route operator`` command, each with that package first on ``PYTHONPATH`` and this
environment's dependencies (the lock's versions).

The archive is ``git archive v0.1.0 operator/stateful_route``, committed as test data so that a
clone without tags runs the same (``tests/data/make_release_archive.sh`` regenerates it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from stateful_route.core.errors import NoAvailablePod, PodPending, StoreUnavailable
from stateful_route.testing.processes import wait_or_kill
from stateful_route.testing.sim import NS, Reachable

__all__ = ["ARCHIVE", "PREVIOUS", "PeerError", "PeerProcess", "package_of", "previous_operator", "unpack"]

PREVIOUS = "0.1.0"
ARCHIVE = Path(__file__).parents[3] / "tests" / "data" / f"release-{PREVIOUS}.tar.gz"
PEER = Path(__file__).with_name("peer.py")
# Runs the worker by path with the current directory, not the worker's folder, first on sys.path
# (that folder's modules would otherwise shadow top-level names).
_RUN_PEER = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"
# Says first which package it runs (see ``package_of``).
_RUN_CLI = (
    "import stateful_route; print('package', stateful_route.__path__[0], flush=True); "
    "from stateful_route.cli.app import main; main()"
)


class PeerError(RuntimeError):
    """A peer's call failed with an error other than NoAvailablePod (named in the message)."""


def unpack(folder: Path) -> Path:
    """Unpack the previous release into ``folder``; returns the directory to put on PYTHONPATH."""
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(folder, filter="data")
    return folder / "operator"


def _environment(path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"}


class PeerProcess:
    """A gateway and pod drivers of the release at ``path`` in one subprocess: commands in,
    answers (matched by id) out. ``compute_linked_pod`` makes it a gateway ``judge.ask`` can use."""

    def __init__(self, path: Path, redis_url: str, prefix: str, namespace: str, service: str) -> None:
        self.path = path
        self.args = [redis_url, prefix, namespace, service]
        self.namespace, self.service = namespace, service
        self.ids = itertools.count()
        self.waiting: dict[str, asyncio.Future[list[str]]] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None
        self.package: Path | None = None  # the folder of the package the peer imported

    async def __aenter__(self) -> PeerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RUN_PEER, str(PEER), *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_environment(self.path),
        )  # fmt: skip
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode()
        if not line.startswith("ready "):
            raise PeerError(f"the peer at {self.path} did not start: {line!r}")
        self.package = Path(line.split(" ", 1)[1].strip())
        if not self.package.is_relative_to(self.path):  # e.g. an install that shadows PYTHONPATH
            raise PeerError(f"the peer runs {self.package}, not the release at {self.path}")
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self.process
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await wait_or_kill(process, 15)
        finally:
            if self.reader is not None:
                self.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.reader

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            key, *answer = line.decode().split(" ")
            self.waiting.pop(key).set_result(" ".join(answer).rstrip("\n").split(" "))
        for future in self.waiting.values():  # the peer died: nobody answers these
            future.set_exception(PeerError("the peer exited"))

    async def do(self, *command: object) -> list[str]:
        """Run one command (see ``peer``); NoAvailablePod, PodPending and StoreUnavailable are
        raised as such, any other error as PeerError."""
        assert self.process is not None
        assert self.process.stdin is not None
        key = str(next(self.ids))
        future = self.waiting[key] = asyncio.get_running_loop().create_future()
        self.process.stdin.write(f"{key} {' '.join(str(c) for c in command)}\n".encode())
        await self.process.stdin.drain()
        status, *answer = await asyncio.wait_for(future, 30)
        if status == "!PodPending":
            raise PodPending(self.namespace, self.service, 0.0)
        if status == "!NoAvailablePod":
            raise NoAvailablePod(self.namespace, self.service)
        if status == "!StoreUnavailable":
            raise StoreUnavailable(" ".join(answer))
        if status != "ok":
            raise PeerError(f"{command}: {status[1:]} {' '.join(answer)}")
        return list(answer)

    async def compute_linked_pod(self, namespace: str, uid: str, service: str) -> int:
        """The peer gateway's answer for ``uid`` (only of the peer's own route)."""
        assert (namespace, service) == (self.namespace, self.service)
        return int((await self.do("ask", uid))[0])


@contextlib.asynccontextmanager
async def previous_operator(
    cluster: Reachable, redis_url: str, prefix: str, path: Path, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The operator of the release at ``path``, as its own command, watching NS, its output in
    ``log``; stopped (SIGTERM, as Kubernetes stops a pod) on exit."""
    output = log.open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RUN_CLI, "operator", "--namespace", NS, "--redis-url", redis_url,
        "--prefix", prefix, "--kubeconfig", str(cluster.kubeconfig), "--liveness", "",
        "--metrics-port", "0", env=_environment(path), stdout=output,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await wait_or_kill(process, 15)
        finally:
            output.close()


def package_of(log: Path) -> Path | None:
    """The folder of the package the operator logging to ``log`` runs (its first line)."""
    with log.open() as lines:
        first = lines.readline().split(" ", 1)
    return Path(first[1].strip()) if first[0] == "package" and len(first) == 2 else None
