"""Redis AUTH and TLS (rediss://): clients, the route mirror and the CLI work through both;
a wrong password or a plain connection to a TLS port is a loud StoreUnavailable."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from stateful_route import ClientDriver, StoreUnavailable
from stateful_route.cli.app import app
from tests.routes import NS, SVC, make_route, until_routable

PASSWORD = "s3cret-pa:ss"


async def test_a_password_protected_redis_serves_clients_and_the_cli(make_redis, private_redis, prefix):
    server = private_redis(password=PASSWORD)
    assert "s3cret" in server.url
    redis = make_redis(server.url)
    table = await make_route(redis, prefix, pods=2)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        pod = await client.compute_linked_pod(NS, "u", SVC)
        await table.remove_pod(NS, SVC, 1 - pod)
        await until_routable([client], 1 - pod, routable=False)  # the mirror follows, through AUTH
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["lookup", NS, SVC, "u", "--redis-url", server.url, "--prefix", prefix, "--json"],
    )
    assert (result.exit_code, json.loads(result.stdout)["pod"]) == (0, pod)

    wrong = make_redis(server.url.replace("s3cret", "wrong"))
    with pytest.raises(StoreUnavailable):
        async with ClientDriver(wrong, namespace=NS, prefix=prefix, timeout=0.5) as client:
            await client.compute_linked_pod(NS, "u", SVC)
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["pods", NS, SVC, "--redis-url", server.url.replace("s3cret", "wrong")]
    )
    assert result.exit_code == 3
    assert "wrong" not in result.output  # the password is not echoed back


async def test_tls_only_redis_serves_clients_and_refuses_plain_connections(
    make_redis, private_redis, prefix, tls_files
):
    server = private_redis(tls=tls_files, password=PASSWORD)
    assert server.url.startswith("rediss://")
    redis = make_redis(server.url)
    table = await make_route(redis, prefix, pods=2)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        pod = await client.compute_linked_pod(NS, "u", SVC)
        assert await client.compute_linked_pod(NS, "u", SVC) == pod
        await table.remove_pod(NS, SVC, 1 - pod)
        await until_routable([client], 1 - pod, routable=False)

    plain = make_redis(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", socket_connect_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        async with ClientDriver(plain, namespace=NS, prefix=prefix, timeout=0.5) as client:
            await client.compute_linked_pod(NS, "u", SVC)
