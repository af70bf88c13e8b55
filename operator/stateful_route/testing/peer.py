"""A gateway and pod drivers of whichever release ``PYTHONPATH`` holds, driven line by line.

Run by ``stateful_route.testing.releases`` as a program (never imported by it), with 0.1.0's
package or this one first on the path, so it uses only the public API both releases share.
Arguments: REDIS_URL PREFIX NAMESPACE SERVICE. Answers each line
``ID COMMAND ARGS...`` it reads (each in its own task, so calls overlap) with ``ID ok
RESULT...`` or ``ID !ErrorClass message``; it exits when its input closes. Its first line is
``ready PATH``, PATH the folder of the ``stateful_route`` package it runs. Commands:

- ``ask UID``: the gateway's ``compute_linked_pod``, answered with the pod;
- ``persist POD UID``, ``try POD UID``: the pod's ``set_linked_pod`` / ``try_set_linked_pod``;
- ``remove POD UID KEEP_MS``, ``remove_id POD UID EXPECTED KEEP_MS``: its removals;
- ``handoff POD UID``: the pod's ``hand_off`` (the new pod, or ``-``);
- ``load POD LOAD``: its ``set_load_state``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

import stateful_route
from stateful_route import ClientDriver, ServerDriver


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return " ".join(_text(v) for v in value)
    return str(value)


class Peer:
    """One gateway and a pod driver per pod index (made on first use), on one Redis client."""

    def __init__(self, url: str, prefix: str, namespace: str, service: str) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.prefix, self.namespace, self.service = prefix, namespace, service
        self.gateway = ClientDriver(self.redis, namespace=namespace, prefix=prefix)
        self.pods: dict[int, ServerDriver] = {}

    def pod(self, index: str) -> ServerDriver:
        number = int(index)
        if number not in self.pods:
            self.pods[number] = ServerDriver(
                self.redis, namespace=self.namespace, service=self.service, pod_index=number,
                prefix=self.prefix,
            )  # fmt: skip
        return self.pods[number]

    async def run(self, command: str, args: list[str]) -> Any:
        if command == "ask":
            return await self.gateway.compute_linked_pod(self.namespace, args[0], self.service)
        driver = self.pod(args[0])
        if command == "persist":
            return await driver.set_linked_pod(args[1])
        if command == "try":
            return await driver.try_set_linked_pod(args[1])
        if command == "remove":
            return await driver.remove_linked_pod(args[1], int(args[2]) / 1000)
        if command == "remove_id":
            return await driver.remove_linked_pod_with_id(args[1], int(args[2]), int(args[3]) / 1000)
        if command == "handoff":
            return await driver.hand_off(args[1])
        if command == "load":
            return await driver.set_load_state(int(args[1]))
        raise ValueError(f"unknown command {command!r}")

    async def answer(self, line: str) -> None:
        key, command, *args = line.split()
        try:
            reply = f"ok {_text(await self.run(command, args))}"
        except Exception as exc:  # every error goes back to the caller, typed by its class name
            reply = f"!{type(exc).__name__} {str(exc).splitlines()[0] if str(exc) else ''}"
        sys.stdout.write(f"{key} {reply}\n")
        sys.stdout.flush()


async def main(url: str, prefix: str, namespace: str, service: str) -> None:
    peer = Peer(url, prefix, namespace, service)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()
    async with peer.gateway:
        print("ready", Path(stateful_route.__file__).parent, flush=True)
        while line := (await reader.readline()).decode().strip():
            task = asyncio.create_task(peer.answer(line))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    await peer.redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
