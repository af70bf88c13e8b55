"""The Redis password never reaches logs, events or the StatefulRoute status."""

from __future__ import annotations

import json
import logging
import re

from stateful_route import RouteTable
from stateful_route.testing.sim import operator
from tests.e2e.test_route_lifecycle import status_of, wait_for_table
from tests.routes import poll_until

PASSWORD = "topsecret-123"


async def test_the_password_is_in_no_log_line_event_or_status(
    cluster, make_redis, private_redis, prefix, caplog
):
    server = private_redis(password=PASSWORD)
    table = RouteTable(make_redis(server.url), prefix=prefix)
    await cluster.start(2)
    caplog.set_level(logging.DEBUG)
    async with operator(cluster, server.url, prefix):
        await wait_for_table(table, [0, 1])
        await cluster.delete_pod(1)
        await wait_for_table(table, [0])

        async def status_written() -> bool:
            return bool((await status_of(cluster)).get("pods"))

        await poll_until(status_written, within=10, every=0.1)
        status = await status_of(cluster)
    assert re.search(r"event=operator_start version=\S+ redis=redis://\*\*\*@127\.0\.0\.1", caplog.text)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(await cluster.route())
    assert PASSWORD not in json.dumps(await cluster.events())
    assert status  # the status was written, and holds no secret
