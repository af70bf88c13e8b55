"""`stateful-route handoff NS SERVICE POD`: the preStop hook for pods not written in Python."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from stateful_route import PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.core.state import PodPhase
from stateful_route.store.keys import Keyring
from stateful_route.testing.local_redis import free_port
from stateful_route.testing.shards import write_links
from tests.routes import NS, SVC, clients, make_route

SCRIPT = Path(sys.executable).parent / "stateful-route"  # the installed console script
pytestmark = pytest.mark.e2e  # each test runs the command as a process of its own


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """The command as a preStop hook runs it: (exit code, stdout, stderr, seconds taken); ``env``
    is added to this process's environment."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else {**os.environ, **env},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), loop.time() - started


async def test_handoff_moves_every_user_reports_shutdown_and_exits_0(redis, redis_url, prefix):
    await make_route(redis, prefix, pods=3)
    pod1 = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    users = [f"u{i}" for i in range(120)]
    for uid in users[:80]:
        await pod1.set_linked_pod(uid)
    async with clients(lambda: redis, prefix, 1) as (client,):
        for uid in users[80:]:
            await client.set_linked_pod_if_absent(NS, uid, SVC, 1)

    code, out, err, _ = await run(
        "handoff", NS, SVC, "1", "--redis-url", redis_url, "--prefix", prefix, "--json"
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {"pod": 1, "moved": 120, "left": 0, "waiting": 0}
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.links == {0: 60, 1: 0, 2: 60}
    assert snapshot.pods[1].routing is RoutingState.SHUTDOWN
    async with clients(lambda: redis, prefix, 1) as (client,):
        where = await client.batch_get_linked_pod(NS, users, SVC)
    assert sorted(uid for uids in where.values() for uid in uids) == sorted(users)
    assert 1 not in where


async def test_handoff_times_out_cleanly_when_no_other_pod_is_available(redis, redis_url, prefix):
    await make_route(redis, prefix, pods=2)
    pod0 = ServerDriver(redis, namespace=NS, service=SVC, pod_index=0, prefix=prefix)
    pod1 = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    await pod0.set_routing_state(RoutingState.DENY_NEW_CALL)
    for uid in ("a", "b", "c"):
        await pod1.set_linked_pod(uid)

    code, out, err, took = await run(
        "handoff", NS, SVC, "1", "--redis-url", redis_url, "--prefix", prefix, "--timeout", "0.5"
    )
    assert code == 5
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err  # one line, for the pod's logs
    assert "timed out after 0.5 s: 3 users still linked to pod 1 of games/room" in err
    assert 0.5 <= took < 10
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.pods[1].routing is RoutingState.SHUTDOWN  # the operator evicts the rest
    assert snapshot.links[1] == 3


async def test_handoff_ends_at_once_when_only_outdated_pods_take_users(redis, redis_url, prefix):
    # The first pod of a rolling update: its users would move again from an outdated pod, and
    # no updated pod starts before it goes. It exits 0 at once; its users wait for the new pod.
    table = await make_route(redis, prefix, pods=2)
    await table.put_phases(NS, SVC, {0: PodPhase(outdated=True), 1: PodPhase(outdated=True)})
    pod1 = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    for uid in ("a", "b", "c"):
        await pod1.set_linked_pod(uid)

    code, out, err, took = await run(
        "handoff", NS, SVC, "1", "--redis-url", redis_url, "--prefix", prefix, "--timeout", "30", "--json"
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {"pod": 1, "moved": 0, "left": 3, "waiting": 3}
    assert took < 10
    snapshot = await table.snapshot(NS, SVC)
    assert snapshot.pods[1].routing is RoutingState.SHUTDOWN  # the operator evicts them
    assert snapshot.links == {0: 0, 1: 3}


async def test_handoff_reports_as_the_pod_its_uid_names(redis, redis_url, prefix):
    """POD_UID (the downward API's metadata.uid) or --pod-uid: the Shutdown report is this pod
    instance's. The table names it: it applies at once. It names another pod at that ordinal (a
    replacement): that pod is untouched, and the report waits for the table to name this one."""
    table = RouteTable(redis, prefix=prefix)
    pods = [PodState(0), PodState(1), PodState(2)]
    await table.put_pods(NS, SVC, pods, instances={0: "uid-0,r", 1: "uid-1,r", 2: "uid-2,r"})
    args = ("--redis-url", redis_url, "--prefix", prefix, "--json")
    code, _, err, _ = await run("handoff", NS, SVC, "1", *args, env={"POD_UID": "uid-1"})
    assert (code, err) == (0, "")
    code, _, err, _ = await run("handoff", NS, SVC, "2", *args, "--pod-uid", "gone-2")
    assert (code, err) == (0, "")
    snapshot = await table.snapshot(NS, SVC)
    assert not snapshot.pods[1].routable
    assert snapshot.pods[2].routable
    assert sorted(snapshot.available) == [0, 2]
    code, out, _, _ = await run("handoff", NS, SVC, "2", *args, "--pod-uid", "a,b")
    assert code == 2
    assert "pod_uid" in json.loads(out)["error"]


async def test_handoff_of_an_unknown_pod_or_without_redis_fails_with_the_usual_codes(
    redis, redis_url, prefix
):
    await make_route(redis, prefix, pods=2)
    code, _, err, _ = await run("handoff", NS, SVC, "7", "--redis-url", redis_url, "--prefix", prefix)
    assert code == 1
    assert "pod 7 is not in the route table" in err
    dead = f"redis://127.0.0.1:{free_port()}/0"
    code, _, _, took = await run(
        "handoff", NS, SVC, "0", "--redis-url", dead, "--prefix", prefix, "--timeout", "1"
    )
    assert code == 3
    assert took < 10


async def persistent_links_on_pod_0(redis, prefix: str, count: int) -> list[str]:
    """A route of 3 pods whose pod 0 holds ``count`` persistent links, written in bulk."""
    await make_route(redis, prefix, pods=3)
    route_keys = Keyring(prefix).route(NS, SVC)
    users = [f"u{i}" for i in range(count)]
    pipe = redis.pipeline(transaction=False)
    for uid in users:
        pipe.set(route_keys.link(uid), "0p")
    await pipe.execute()
    await write_links(redis, route_keys, 0, dict.fromkeys(users, float("inf")))
    return users


async def test_handoff_timeout_bounds_the_whole_run_with_many_users(redis, redis_url, prefix):
    users = await persistent_links_on_pod_0(redis, prefix, 15_000)

    code, out, _, took = await run(
        "handoff", NS, SVC, "0", "--redis-url", redis_url, "--prefix", prefix, "--timeout", "1", "--json"
    )
    assert took < 1 + 2.5, took  # + interpreter start-up and the Shutdown report
    done = json.loads(out)
    snapshot = await RouteTable(redis, prefix=prefix).snapshot(NS, SVC)
    assert snapshot.pods[0].routing is RoutingState.SHUTDOWN
    assert done["left"] == snapshot.links[0] == len(users) - done["moved"]
    assert code == (5 if done["left"] else 0)


async def test_handoff_exits_3_with_one_line_when_redis_stops_mid_run(make_redis, private_redis, prefix):
    redis_server = private_redis()
    redis = make_redis(redis_server.url)
    users = await persistent_links_on_pod_0(redis, prefix, 20_000)
    assert redis_server.process is not None
    pid = redis_server.process.pid
    args = ("handoff", NS, SVC, "0", "--redis-url", redis_server.url, "--prefix", prefix, "--timeout", "20")

    async def pause_once_moving() -> None:  # stop Redis once the hand-off pass is under way
        counts = Keyring(prefix).route(NS, SVC).link_counts
        while int(await redis.hget(counts, "0") or 0) > len(users) - 200:
            await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGSTOP)

    try:
        (code, out, err, took), _ = await asyncio.gather(run(*args, "--json"), pause_once_moving())
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert "redis unavailable" in err
    assert "redis unavailable" in json.loads(out)["error"]
    assert took < 10
