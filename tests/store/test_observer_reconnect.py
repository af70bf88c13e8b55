"""The chaos judge's observer: a subscription redis-py restores by itself inside one wait, or a
table version skipped, is a time the observer was deaf, so what it missed then is never judged
against users."""

from __future__ import annotations

import asyncio
import time

from stateful_route.store import changes
from stateful_route.store.connection import connect
from stateful_route.store.keys import changes_channel
from stateful_route.testing.judge import Findings, Timeline, observe
from tests.routes import NS, SVC, make_route, poll_until


async def test_a_change_missed_across_a_silent_reconnect_is_inside_a_deaf_interval(
    make_redis, private_redis, prefix
):
    server = private_redis()
    admin = make_redis(server.url)
    table = await make_route(admin, prefix, pods=3)
    channel = changes_channel(prefix, NS)
    timeline, stop = Timeline(3), asyncio.Event()
    watcher = connect(server.url)  # as the chaos run's observer: redis-py reconnects by itself
    observer = asyncio.create_task(observe(watcher, timeline, channel, stop, table, (NS, SVC)))
    try:
        await poll_until(lambda: asyncio.sleep(0, len(timeline.blind) == 1), within=5)  # first read
        await asyncio.sleep(0.3)
        before = time.time()  # the user's last answer on pod 1
        async with admin.pipeline(transaction=False) as pipe:
            # One batch: pod 1 is unroutable and back before the observer can resubscribe.
            pipe.client_kill_filter(_type="pubsub")
            pipe.publish(channel, changes.table_changed(SVC, [0, 2], time.time(), 2))
            pipe.publish(channel, changes.table_changed(SVC, [0, 1, 2], time.time(), 3))
            await pipe.execute()
        moved = time.time()  # its next answer, on pod 0: a move off pod 1, which was unroutable
        await poll_until(lambda: asyncio.sleep(0, len(timeline.blind) == 2), within=5)
    finally:
        stop.set()
        await observer
        await watcher.aclose()
    assert timeline.episodes.get(1) is None  # the episode itself went unheard
    findings = Findings(answers=[("u", 1, before, before), ("u", 0, moved, moved)])
    verdict = findings.judge(timeline)
    assert verdict.moves == [], timeline.blind  # not blamed on the gateways
    assert len(verdict.unjudged) == 1


async def test_a_change_missed_without_a_reconnect_shows_as_a_version_gap_and_is_set_apart(
    make_redis, prefix
):
    admin = make_redis()
    table = await make_route(admin, prefix, pods=3)
    channel = changes_channel(prefix, NS)
    version = (await table.snapshot(NS, SVC)).version
    timeline, stop = Timeline(3), asyncio.Event()
    observer = asyncio.create_task(observe(make_redis(), timeline, channel, stop, table, (NS, SVC)))
    try:
        await poll_until(lambda: asyncio.sleep(0, len(timeline.blind) == 1), within=5)  # first read
        await asyncio.sleep(0.3)
        before = time.time()  # the user's last answer on pod 1
        await asyncio.sleep(0.05)
        # Version + 1 (pod 1 unroutable) was never heard; + 2 brings it back.
        moved = time.time()  # its next answer, on pod 0: a move off pod 1, which was unroutable
        await asyncio.sleep(0.05)
        await admin.publish(channel, changes.table_changed(SVC, [0, 1, 2], time.time(), version + 2))
        await poll_until(lambda: asyncio.sleep(0, len(timeline.blind) == 2), within=5)
    finally:
        stop.set()
        await observer
    findings = Findings(answers=[("u", 1, before, before), ("u", 0, moved, moved)])
    verdict = findings.judge(timeline)
    assert verdict.moves == [], timeline.blind
    assert len(verdict.unjudged) == 1
