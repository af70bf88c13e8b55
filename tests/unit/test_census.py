"""The census proves a pod deleted only when the list is sure of it; its failure stops nothing."""

from __future__ import annotations

import datetime
import logging

from stateful_route.controller import census
from stateful_route.controller.pods import PodRecord
from stateful_route.controller.spec import RouteRef, RouteSpec
from stateful_route.core.state import RoutingState

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


def record(uid: str, created: str) -> PodRecord:
    return PodRecord(f"game-{uid}", uid, 0, True, False, RoutingState.READY, created=created)


def test_only_absent_pods_created_well_before_the_list_are_gone():
    records = [
        record("listed", "2026-11-28T11:00:00Z"),
        record("old-absent", "2026-11-28T11:00:00Z"),
        record("young-absent", "2026-11-28T11:59:30Z"),  # may have been created during the list
        record("no-timestamp", ""),
    ]
    assert census.gone_uids(records, {"listed"}, NOW, margin=60) == {"old-absent", "no-timestamp"}


def route_of(name: str, stateful_set: str) -> RouteRef:
    return RouteRef("games", name, f"uid-{name}", RouteSpec.parse(name, {"statefulSetName": stateful_set}))


async def test_a_failing_census_is_logged_and_changes_nothing(mocker, caplog):
    taken = census.Census(None, interval=30, margin=60)
    route = route_of("room", "game")
    mocker.patch.object(census, "listed_uids", return_value=set())
    await taken.take(route, [record("earlier", "")])
    assert taken.gone == {"earlier"}
    # The Kubernetes API failing is what cannot be made real here (kmock cannot fail a list).
    mocker.patch.object(census, "listed_uids", side_effect=RuntimeError("503 from the API server"))
    with caplog.at_level(logging.WARNING):
        await taken.take(route, [record("earlier", "")])
    assert taken.gone == {"earlier"}
    assert "event=census_failed namespace=games route=room" in caplog.text


async def test_one_routes_proof_survives_another_routes_census(mocker):
    """Issue 11 point 3: with one shared set trimmed to each route's pods, the chat route's
    census forgot what the room route's had proved, and the deleted pod came back."""
    taken = census.Census(None, interval=30, margin=60)
    mocker.patch.object(census, "listed_uids", return_value={"game-0"})
    await taken.take(route_of("room", "game"), [record("game-0", ""), record("game-2", "")])
    mocker.patch.object(census, "listed_uids", return_value={"chat-0"})
    await taken.take(route_of("chat", "chat"), [record("chat-0", "")])
    assert taken.gone == {"game-2"}
    assert [r.uid for r in taken.present([record("game-0", ""), record("game-2", "")])] == ["game-0"]
    taken.forget(route_of("room", "game"))
    assert taken.gone == set()
