"""The Go client's calls played from tests: clients/go/internal/replay (a subprocess reading one
JSON call a line, answering one JSON line each) and the same calls through the Python client, so
a test can compare both clients' answers on one deployment."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import pytest

from stateful_route import (
    ClientDriver,
    InvalidInput,
    NoAvailablePod,
    PodPending,
    RoutingState,
    ServerDriver,
    StoreError,
    StoreUnavailable,
)
from stateful_route.store.connection import AnyRedis
from stateful_route.testing.processes import wait_or_kill

GO_MODULE = Path(__file__).resolve().parents[1] / "clients" / "go"
Call = dict[str, Any]
Answer = dict[str, Any]


def go_tool() -> str | None:
    """The go command: on PATH, else where the Makefile looks for it."""
    found = shutil.which("go")
    if found is None and Path("/usr/local/go/bin/go").exists():
        found = "/usr/local/go/bin/go"
    return found


def build_go_program(package: str, folder: Path) -> Path:
    """Build the Go program ``clients/go/internal/<package>`` into ``folder``; the test is skipped
    when Go is missing (`make test` requires it, so there it never is)."""
    go = go_tool()
    if go is None:
        pytest.skip("Go is not installed (make test requires Go >= 1.26)")
    binary = folder / package
    subprocess.run(
        [go, "build", "-o", str(binary), f"./internal/{package}"],
        cwd=GO_MODULE,
        env={**os.environ, "GOFLAGS": "-p=1"},
        check=True,
        timeout=600,
    )
    return binary


class GoProgram:
    """A line-driven Go program of one route (interop, podsim) as a subprocess: it prints "ready",
    answers the lines it reads, and exits at the end of its input."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process, self.stdin, self.stdout = process, process.stdin, process.stdout

    @classmethod
    async def start(cls, binary: Path, redis_url: str, prefix: str, namespace: str, service: str) -> Self:
        """The program started on the route ``namespace``/``service``; not yet ready."""
        process = await asyncio.create_subprocess_exec(
            str(binary), "-url", redis_url, "-prefix", prefix, "-namespace", namespace, "-service", service,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    async def ready(self) -> None:
        """Wait for its first line, "ready"."""
        line = await asyncio.wait_for(self.stdout.readline(), 10)
        assert line == b"ready\n", line

    async def close(self, within: float) -> None:
        """End its input and wait for it to exit; killed if it has not within ``within`` seconds."""
        self.stdin.close()
        await wait_or_kill(self.process, within)


class GoReplay:
    """The Go client in a subprocess: ``async with GoReplay(binary, url, prefix) as go``, then
    ``await go.play(calls)``. ``subscribed`` says whether its ClientDriver followed the change
    channels within the timeout."""

    def __init__(self, binary: Path, url: str, prefix: str, *, timeout: float = 1.0) -> None:
        self.args = [str(binary), "-url", url, "-prefix", prefix, "-timeout", f"{timeout}s"]
        self.subscribed = False
        self.stderr = b""
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> GoReplay:
        self._process = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        ready = json.loads(await self._line())
        self.subscribed = ready["subscribed"]
        return self

    async def __aexit__(self, *_: object) -> None:
        process = self._running()
        assert process.stdin is not None
        assert process.stderr is not None
        process.stdin.close()
        try:
            self.stderr = await asyncio.wait_for(process.stderr.read(), 10)
        finally:
            await wait_or_kill(process, 10)

    async def play(self, calls: list[Call]) -> list[Answer]:
        """Send every call, then read their answers (in order)."""
        process = self._running()
        assert process.stdin is not None
        process.stdin.write("".join(json.dumps(call) + "\n" for call in calls).encode())
        await process.stdin.drain()
        return [json.loads(await self._line()) for _ in calls]

    def _running(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "use it in `async with`"
        return self._process

    async def _line(self) -> bytes:
        process = self._running()
        assert process.stdout is not None
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"replay exited: {(await process.stderr.read()).decode()}")
        return line


class PythonReplay:
    """The same calls through the Python client (a ClientDriver entered by the caller, and a
    ServerDriver per pod made on first use), answered in the replay program's shape."""

    def __init__(
        self, redis: AnyRedis, client: ClientDriver, namespace: str, prefix: str, *, timeout: float = 1.0
    ) -> None:
        self.redis, self.client, self.namespace, self.prefix = redis, client, namespace, prefix
        self.timeout = timeout
        self.servers: dict[tuple[str, int], ServerDriver] = {}

    async def play(self, calls: list[Call]) -> list[Answer]:
        """Each call in turn, as the Go program plays them."""
        answers = []
        for call in calls:
            start = time.time()
            try:
                answer: Answer = {"value": await self._play(call)}
            except Exception as exc:
                answer = {"value": None, "error": kind(exc), "message": str(exc)}
            answers.append({**answer, "start": start, "end": time.time()})
        return answers

    async def _play(self, call: Call) -> Any:
        op, c, ns = call["op"], self.client, self.namespace
        uid, service = call.get("uid", ""), call.get("service", "")
        if op == "sleep":
            return await asyncio.sleep(call["seconds"])
        if op == "batch_get_linked_pod":
            grouped = await c.batch_get_linked_pod(ns, call["uids"], service)
            return {str(pod): sorted(uids) for pod, uids in grouped.items()}
        if op in ("set_cache", "cache_expired", "get_linked_in_cache"):
            args = (ns, uid, service, call["pod"]) if op == "set_cache" else (ns, uid, service)
            return getattr(c, op)(*args)
        if op == "set_linked_pod_if_absent":
            return await c.set_linked_pod_if_absent(ns, uid, service, call["pod"])
        if op == "get_link_service":
            return await c.get_link_service(ns, uid)
        if op in ("is_pod_routable", "is_pod_available"):
            return await getattr(c, op)(ns, service, call["index"])
        if op in ("routable_pods", "best_pod"):
            return await getattr(c, op)(ns, service)
        if op.startswith("server."):
            return await self._server(op.removeprefix("server."), call)
        return await getattr(c, op)(ns, uid, service)

    async def _server(self, op: str, call: Call) -> Any:
        key = (call["service"], call["pod"])
        if key not in self.servers:
            self.servers[key] = ServerDriver(
                self.redis,
                namespace=self.namespace,
                service=key[0],
                pod_index=key[1],
                prefix=self.prefix,
                timeout=self.timeout,
            )
        server = self.servers[key]
        if op == "set_load_state":
            return await server.set_load_state(call["load"])
        if op == "set_routing_state":
            return await server.set_routing_state(RoutingState[call["state"]])
        return await getattr(server, op)(call["uid"])


def kind(exc: Exception) -> str:
    """The replay program's name for an error."""
    for kind_, error in (
        ("InvalidInput", InvalidInput),
        ("PodPending", PodPending),
        ("NoAvailablePod", NoAvailablePod),
        ("StoreUnavailable", StoreUnavailable),
        ("StoreError", StoreError),
    ):
        if isinstance(exc, error):
            return kind_
    return "Unexpected"


def outcomes(answers: list[Answer]) -> list[tuple[Any, str | None]]:
    """What the answers say, without their timing and messages: comparable across clients."""
    return [(answer["value"], answer.get("error")) for answer in answers]
