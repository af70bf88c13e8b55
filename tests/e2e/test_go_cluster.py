"""The Go client on a 3-master Redis Cluster answers as the Python client does: the ten
ClientDriver operations, the route-view queries and the ServerDriver's reports and links, in a
seeded random order (the seed is printed; SR_GO_SEED=<seed> replays it), played by each client
under its own key prefix from identical route tables."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from stateful_route import ClientDriver, PodState, RouteTable
from stateful_route.store.connection import connect
from stateful_route.testing.cleanup import delete_prefix
from tests.go_replay import Call, GoReplay, PythonReplay, outcomes

pytestmark = pytest.mark.cluster

NS = "games"
ROOM, LOBBY = "room", "lobby"
PODS = {ROOM: 4, LOBBY: 2}
USERS = [f"user-{i}" for i in range(40)]
SETTLE: Call = {"op": "sleep", "seconds": 0.1}  # a server's change message reaches the client's mirror
TIMEOUT = 5.0  # generous: a call timing out on a loaded machine is not what is compared here


def scenario(rng: random.Random, steps: int) -> list[Call]:
    """Route-view queries on the fresh tables, then ``steps`` random calls. Server calls are each
    followed by a pause: their change messages drop cached links asynchronously, so a cache
    read right after one would race it in either client."""
    calls: list[Call] = [
        *({"op": "routable_pods", "service": s} for s in PODS),
        *({"op": "best_pod", "service": s} for s in PODS),
        *({"op": op, "service": ROOM, "index": i} for op in ("is_pod_routable", "is_pod_available")
          for i in (0, 3, 4)),
    ]  # fmt: skip
    for _ in range(steps):
        service = rng.choice([ROOM, ROOM, LOBBY])
        uid = rng.choice(USERS) if rng.random() > 0.02 else ""  # now and then bad input
        pod = rng.randrange(-1, PODS[service] + 1)  # -1: bad input; PODS[service]: no such pod
        user = {"uid": uid, "service": service}
        op = rng.choices(
            ["compute_linked_pod", "get_linked_pod", "get_linked_pod_not_cache",
             "get_linked_pod_in_cache_or_if_persist", "get_linked_in_cache", "set_cache", "cache_expired",
             "set_linked_pod_if_absent", "get_link_service", "batch_get_linked_pod", "server"],
            weights=[8, 3, 3, 3, 3, 1, 1, 3, 2, 1, 2],
        )[0]  # fmt: skip
        if op == "server":
            server: Call = rng.choice(
                [{"op": "server.set_load_state", "load": rng.randrange(0, 50)},
                 {"op": "server.set_routing_state", "state": rng.choice(["READY", "READY", "DENY_NEW_CALL"])},
                 {"op": "server.set_linked_pod", "uid": uid},
                 {"op": "server.remove_linked_pod", "uid": uid}]
            )  # fmt: skip
            calls += [{"service": service, "pod": max(pod, 0) % PODS[service], **server}, SETTLE]
        elif op == "batch_get_linked_pod":
            calls.append({"op": op, "service": service, "uids": rng.sample(USERS, 25)})
        elif op == "get_link_service":
            calls.append({"op": op, "uid": uid})
        elif op in ("set_cache", "set_linked_pod_if_absent"):
            calls.append({"op": op, **user, "pod": pod})
        else:
            calls.append({"op": op, **user})
    return calls


async def test_go_and_python_answer_alike_on_a_cluster(
    redis_cluster_url: str, go_replay: Path, prefix: str
) -> None:
    seed = int(os.environ.get("SR_GO_SEED", random.randrange(2**32)))
    print(f"\nSR_GO_SEED={seed}")
    calls = scenario(random.Random(seed), steps=250)
    redis = connect(redis_cluster_url)
    go_prefix, py_prefix = f"{prefix}go", f"{prefix}py"
    try:
        for each in (go_prefix, py_prefix):
            table = RouteTable(redis, prefix=each, timeout=TIMEOUT)
            for service, pods in PODS.items():
                await table.put_pods(NS, service, [PodState(i) for i in range(pods)])
        async with GoReplay(go_replay, redis_cluster_url, go_prefix, timeout=TIMEOUT) as go:
            assert go.subscribed
            go_answers = await go.play(calls)
        async with ClientDriver(redis, namespace=NS, prefix=py_prefix, timeout=TIMEOUT) as client:
            py_answers = await PythonReplay(redis, client, NS, py_prefix, timeout=TIMEOUT).play(calls)
    finally:
        for each in (go_prefix, py_prefix):
            await delete_prefix(redis, each)
        await redis.aclose()
    differ = [
        (i, call, go_answer, py_answer)
        for i, (call, go_answer, py_answer) in enumerate(
            zip(calls, outcomes(go_answers), outcomes(py_answers), strict=True)
        )
        if go_answer != py_answer
    ]
    assert differ == []
    kinds = Counter(error or "answer" for _, error in outcomes(go_answers))
    print(f"{len(calls)} calls: {dict(kinds)}")
    assert kinds["answer"] > len(calls) // 2
    assert set(kinds) <= {"answer", "InvalidInput", "NoAvailablePod"}
