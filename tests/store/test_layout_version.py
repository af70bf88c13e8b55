"""The route's Redis layout version: a route records the layout it was first written with, and
every script checks it in the same call. A route written by a newer layout is refused with
LayoutTooNew naming both versions, before anything is read or written; an unmarked route (written
before layouts were recorded) is served and stays unmarked until it is migrated."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stateful_route import ClientDriver, LayoutTooNew, PodState, RouteTable, RoutingState, ServerDriver
from stateful_route.core.constants import LAYOUT
from stateful_route.core.state import PodPhase
from stateful_route.store import scripts
from stateful_route.store.eviction import evict
from stateful_route.store.links import LinkStore
from tests.routes import NS, SVC, keys_under, make_route

Call = Callable[[RouteTable, LinkStore, ClientDriver, ServerDriver], Awaitable[Any]]


async def _linked(store: LinkStore, pod: int) -> list[str]:
    return [uid async for uid in store.linked_users(store.keyring.route(NS, SVC), pod)]


# Every public operation that runs a script, by the script it runs.
CALLS: dict[str, Call] = {
    "place": lambda t, s, c, p: c.compute_linked_pod(NS, "new-user", SVC),
    "place_many": lambda t, s, c, p: s.place_many(s.keyring.route(NS, SVC), ["a", "b"], 60),
    "if_absent": lambda t, s, c, p: c.set_linked_pod_if_absent(NS, "new-user", SVC, 0),
    "read": lambda t, s, c, p: c.get_linked_pod_not_cache(NS, "u0", SVC),
    "set_persistent": lambda t, s, c, p: p.set_linked_pod("u0"),
    "remove": lambda t, s, c, p: p.remove_linked_pod("u0"),
    "hand_off": lambda t, s, c, p: p.hand_off("u0"),
    "server_report": lambda t, s, c, p: p.set_routing_state(RoutingState.DENY_NEW_CALL),
    "evict": lambda t, s, c, p: evict(s, s.keyring.route(NS, SVC), 1, reason="test", rebind_ttl=None),
    "count": lambda t, s, c, p: s.count_linked(s.keyring.route(NS, SVC), 1),
    "linked": lambda t, s, c, p: _linked(s, 1),
    "snapshot": lambda t, s, c, p: t.snapshot(NS, SVC),
    "write_table": lambda t, s, c, p: t.put_pods(NS, SVC, [PodState(0), PodState(1, ready=False)]),
    "configure": lambda t, s, c, p: t.configure(NS, SVC, max_links_per_pod=5),
    "put_phases": lambda t, s, c, p: t.put_phases(NS, SVC, {1: PodPhase(outdated=True)}),
    "phases": lambda t, s, c, p: t.phases(NS, SVC),
    "prune": lambda t, s, c, p: t.prune(NS, SVC),
    # Not a script: plain reads of the user's link in each service, checked against each layout.
    "links_of_user": lambda t, s, c, p: s.links_of_user(NS, "u0"),
}


def test_every_script_checks_the_layout_first():
    """Each script's first statement after its includes is the check (nothing read or written
    before it; PLACE's reads the route's settings in the same command), and the calls above
    exercise every script but the migration's own."""
    for name in scripts.names():
        body = (Path(str(scripts.LUA)) / f"{name}.lua").read_text(encoding="utf-8").split("\n")
        code = [line for line in body if line and not line.startswith(("--", "#!"))]
        if name == "place":  # builds the config key from its base argument first
            assert code[0].startswith("local base = "), name
            assert code[1] == "local settings = check_layout_settings(base .. 'cfg')", name
        else:
            assert re.fullmatch(r"check_layout\(KEYS\[\d\]\)", code[0]), (name, code[0])
    assert set(CALLS) | {"migrate_links", "migrate_verify", "migrate_finish"} >= set(scripts.names())
    assert set(CALLS) - set(scripts.names()) == {"links_of_user"}


def test_the_lua_and_python_layouts_agree():
    assert f"local LAYOUT = {LAYOUT}\n" in (Path(str(scripts.LUA)) / "include" / "layout.lua").read_text()


async def test_a_new_route_records_this_layout(redis, prefix):
    await make_route(redis, prefix, pods=2)
    assert await redis.hget(f"{prefix}:{{{NS}/{SVC}}}:cfg", "layout") == str(LAYOUT).encode()


async def test_an_unmarked_route_stays_unmarked_until_migrated(redis, prefix):
    """Written before layouts were recorded: today's writes serve it, but never claim it holds
    only this layout's data (its older data may not be moved yet)."""
    table = await make_route(redis, prefix, pods=2)
    config = f"{prefix}:{{{NS}/{SVC}}}:cfg"
    await redis.hdel(config, "layout")
    await table.put_pods(NS, SVC, [PodState(0), PodState(1), PodState(2)])
    await table.configure(NS, SVC, max_links_per_pod=3)
    assert await redis.hget(config, "layout") is None


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_a_route_of_a_newer_layout_is_refused_and_left_untouched(redis, prefix, call):
    table = await make_route(redis, prefix, pods=2)
    store = LinkStore(redis, table.keyring)
    server = ServerDriver(redis, namespace=NS, service=SVC, pod_index=1, prefix=prefix)
    await server.set_linked_pod("u0")
    await redis.hset(f"{prefix}:{{{NS}/{SVC}}}:cfg", "layout", LAYOUT + 1)
    before = await keys_under(redis, prefix)
    async with ClientDriver(redis, namespace=NS, prefix=prefix) as client:
        with pytest.raises(LayoutTooNew) as raised:
            await CALLS[call](table, store, client, server)
    assert (raised.value.found, raised.value.known) == (LAYOUT + 1, LAYOUT)
    assert f"layout is {LAYOUT + 1}, newer than layout {LAYOUT}" in str(raised.value)
    assert await keys_under(redis, prefix) == before
