"""Every ```python block of README.md and docs/ runs as written, against a private redis-server.

A block is a whole program, run with this interpreter and ``REDIS_URL`` naming the server. The
comment before it names what it expects to find there (``SETUPS``); ``# prints: TEXT`` lines say
what it prints, in order. The server is flushed between blocks (the examples use the default
key prefix, as a user would).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from stateful_route import PodState, RouteTable
from stateful_route.store.connection import connect
from stateful_route.testing.local_redis import PrivateRedis
from tests.docs.markdown import Block, blocks, pages

pytestmark = pytest.mark.e2e  # a redis-server of its own, and a Python process per block

PRINTS = "# prints: "


async def _route(url: str) -> None:
    """The route ``room`` of namespace ``games`` with pods 0 to 3, as the operator writes it."""
    client = connect(url)
    async with client:
        await RouteTable(client).put_pods("games", "room", [PodState(i) for i in range(4)])


async def _nothing(url: str) -> None:
    return None


SETUPS: dict[str, Callable[[str], Awaitable[None]]] = {"route": _route, "none": _nothing}


def python_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page) if block.lang == "python"]


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateRedis]:
    private = PrivateRedis().start()
    try:
        yield private
    finally:
        private.cleanup()


def test_the_pages_have_python_examples() -> None:
    where = {block.path.name for block in python_blocks()}
    assert {"README.md", "gateway-python.md", "pods.md"} <= where


@pytest.mark.parametrize("block", python_blocks(), ids=lambda block: block.where)
def test_the_example_runs(block: Block, server: PrivateRedis, tmp_path: Path) -> None:
    need = f"{block.where}: say what the block needs, e.g. <!-- python: setup=route --> before it"
    assert block.marker is not None, need
    assert block.marker[0] == "python", need
    kind, _, setup = block.marker[1].partition("=")
    assert kind == "setup", need
    assert setup in SETUPS, f"{block.where}: unknown setup {setup!r}; known {sorted(SETUPS)}"
    with redis.Redis.from_url(server.url) as plain:
        plain.flushall()
    asyncio.run(SETUPS[setup](server.url))
    program = tmp_path / "example.py"
    program.write_text(block.text)
    run = subprocess.run(
        [sys.executable, str(program)],
        env={**os.environ, "REDIS_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, f"{block.where} failed:\n{run.stderr}"
    promised = [
        line.strip()[len(PRINTS) :] for line in block.text.splitlines() if line.strip().startswith(PRINTS)
    ]
    if promised:
        assert run.stdout.splitlines() == promised, f"{block.where}: printed {run.stdout!r}"
