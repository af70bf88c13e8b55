"""The conformance vectors (conformance/*.json, format in conformance/README.md), played by the
Python client against a real Redis; clients/go plays the same vectors in Go (``go test``), so a
new vector fails in both until both pass it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from stateful_route import (
    ClientDriver,
    InvalidInput,
    NoAvailablePod,
    PodPending,
    PodState,
    RoutingState,
    ServerDriver,
)
from stateful_route.core.constants import DEFAULT_LINK_TTL
from stateful_route.core.errors import StatefulRouteError, StoreError, StoreUnavailable
from stateful_route.core.state import PodPhase
from stateful_route.store.eviction import evict
from stateful_route.store.keys import Keyring
from stateful_route.store.links import LinkStore, decode_link
from stateful_route.store.table import RouteTable

VECTORS = sorted((Path(__file__).resolve().parents[2] / "conformance").glob("*.json"))
ROUTING = {
    "Ready": RoutingState.READY,
    "DenyNewCall": RoutingState.DENY_NEW_CALL,
    "Shutdown": RoutingState.SHUTDOWN,
}


def text(value: Any) -> Any:
    """A string, or ``{"repeat": s, "times": n}``."""
    if isinstance(value, dict):
        return value["repeat"] * value["times"]
    return value


def test_there_are_vectors():
    assert len(VECTORS) >= 6


@pytest.mark.parametrize(
    "vector", [json.loads(p.read_text(encoding="utf-8")) for p in VECTORS], ids=[p.stem for p in VECTORS]
)
async def test_vector(vector: dict[str, Any], redis, prefix):
    ns = vector.get("namespace", "conf")
    table = RouteTable(redis, prefix=prefix)
    store = LinkStore(redis, Keyring(prefix))
    client: ClientDriver | None = None

    async def fresh() -> ClientDriver:
        nonlocal client
        if client is not None:
            await client.__aexit__(None, None, None)
        client = await ClientDriver(redis, namespace=ns, prefix=prefix).__aenter__()
        return client

    try:
        driver = await fresh()
        for number, step in enumerate(vector["steps"], 1):
            where = f"{vector['name']} step {number} ({step['do']})"
            service = text(step.get("service", ""))
            if step["do"] == "table":
                await write_table(table, ns, service, step)
                driver = await fresh()
            elif step["do"] == "persist":
                route_keys = store.keyring.route(ns, service)
                await store.link_persistent(route_keys, text(step["uid"]), step["pod"], only_if_free=False)
                driver = await fresh()
            elif step["do"] == "new_client":
                driver = await fresh()
            elif step["do"] == "sleep":
                await asyncio.sleep(step["seconds"])
            elif step["do"] == "raw":
                await redis.set(store.keyring.route(ns, service).link(text(step["uid"])), step["value"])
                driver = await fresh()
            elif step["do"] == "phases":
                phases = {pod: PodPhase(outdated=True) for pod in step["outdated"]}
                await table.put_phases(ns, service, phases)
                driver = await fresh()
            elif step["do"] == "evict":
                done = await evict(
                    store,
                    store.keyring.route(ns, service),
                    step["pod"],
                    reason="conformance",
                    rebind_ttl=DEFAULT_LINK_TTL if step.get("rebind") else None,
                    hold=step.get("hold_seconds", 0),
                )
                assert {"removed": done.removed, "rebound": done.rebound} == step["expect"], where
                driver = await fresh()
            elif step["do"] == "hand_off":
                server = ServerDriver(
                    redis, namespace=ns, service=service, pod_index=step["pod"], prefix=prefix
                )
                check_answer(where, step["expect"], await server.hand_off(text(step["uid"])))
                driver = await fresh()
            elif step["do"] == "state":
                await check_state(where, redis, table, store.keyring, ns, service, step["expect"])
            else:
                try:
                    answer = await call(driver, ns, service, step)
                except StatefulRouteError as exc:
                    check_error(where, step["expect"], exc)
                else:
                    check_answer(where, step["expect"], answer)
    finally:
        if client is not None:
            await client.__aexit__(None, None, None)


async def call(driver: ClientDriver, ns: str, service: str, step: dict[str, Any]) -> Any:
    op, uid = step["do"], text(step.get("uid"))
    ns = text(step.get("namespace", ns))
    match op:
        case "compute_linked_pod":
            return await driver.compute_linked_pod(ns, uid, service)
        case "get_linked_pod" | "get_linked_pod_not_cache" | "get_linked_pod_in_cache_or_if_persist":
            return await getattr(driver, op)(ns, uid, service)
        case "get_linked_in_cache":
            return driver.get_linked_in_cache(ns, uid, service)
        case "set_linked_pod_if_absent":
            return await driver.set_linked_pod_if_absent(ns, uid, service, step["pod"])
        case "set_cache":
            return driver.set_cache(ns, uid, service, step["pod"])
        case "cache_expired":
            return driver.cache_expired(ns, uid, service)
        case "batch_get_linked_pod":
            return await driver.batch_get_linked_pod(ns, [text(u) for u in step["uids"]], service)
        case "get_link_service":
            return await driver.get_link_service(ns, uid)
    raise AssertionError(f"unknown step {op!r}")


def check_error(where: str, expect: dict[str, Any], exc: StatefulRouteError) -> None:
    kind = expect.get("error")
    if kind == "InvalidInput":
        assert isinstance(exc, InvalidInput), f"{where}: {exc!r}"
        assert exc.field == expect["field"], f"{where}: {exc!r}"
    elif kind == "NoAvailablePod":
        assert type(exc) is NoAvailablePod, f"{where}: {exc!r}"
        assert exc.pod == expect.get("pod"), f"{where}: {exc!r}"
    elif kind == "PodPending":
        assert isinstance(exc, PodPending), f"{where}: {exc!r}"
    elif kind == "StoreError":
        assert isinstance(exc, StoreError), f"{where}: {exc!r}"
        assert not isinstance(exc, StoreUnavailable), f"{where}: {exc!r}"
    else:
        raise AssertionError(f"{where}: unexpected {exc!r}")


def check_answer(where: str, expect: dict[str, Any], answer: Any) -> None:
    assert "error" not in expect, f"{where}: answered {answer!r}, want {expect['error']}"
    if "pod" in expect:
        assert answer == expect["pod"], f"{where}: {answer!r}"
    elif "groups" in expect:
        assert {str(pod): uids for pod, uids in answer.items()} == expect["groups"], f"{where}: {answer!r}"
    elif "services" in expect:
        assert answer == expect["services"], f"{where}: {answer!r}"


async def write_table(table: RouteTable, ns: str, service: str, step: dict[str, Any]) -> None:
    pods = [
        PodState(
            p["index"],
            ready=p.get("ready", True),
            terminating=p.get("terminating", False),
            routing=ROUTING[p.get("routing", "Ready")],
            load=p.get("load", 0),
        )
        for p in step["pods"]
    ]
    await table.put_pods(ns, service, pods)
    if (policy := step.get("policy")) is not None:
        await table.configure(
            ns,
            service,
            max_links_per_pod=policy.get("max_links_per_pod", 0),
            link_ttl=policy.get("link_ttl_seconds"),
            rollout_wait=policy.get("rollout_wait_seconds"),
        )


async def check_state(
    where: str, redis: Any, table: RouteTable, keyring: Keyring, ns: str, service: str, expect: dict[str, Any]
) -> None:
    route_keys = keyring.route(ns, service)
    for uid, want in expect.get("links", {}).items():
        raw = await redis.get(route_keys.link(uid))
        if want is None:
            assert raw is None, f"{where}: {uid} has link {raw!r}"
            continue
        assert raw is not None, f"{where}: {uid} has no link"
        pod, persistent = decode_link(raw)
        ttl = await redis.pttl(route_keys.link(uid))
        assert pod == want["pod"], f"{where}: {uid} on {pod}"
        assert persistent == want.get("persistent", persistent), f"{where}: {uid} persistent={persistent}"
        assert persistent == (ttl < 0), f"{where}: {uid} persistent={persistent} with ttl {ttl}"
    snapshot = await table.snapshot(ns, service)
    if "pod_links" in expect:
        assert {str(pod): n for pod, n in snapshot.links.items()} == expect["pod_links"], where
    if "best" in expect:
        assert snapshot.best == expect["best"], where
