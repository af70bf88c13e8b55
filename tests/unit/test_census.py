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


async def test_a_failing_census_is_logged_and_changes_nothing(mocker, caplog):
    taken = census.Census(None, interval=30, margin=60)
    taken.gone = {"earlier"}
    # The Kubernetes API failing is what cannot be made real here (kmock cannot fail a list).
    mocker.patch.object(census, "listed_uids", side_effect=RuntimeError("503 from the API server"))
    route = RouteRef("games", "room", "uid-1", RouteSpec.parse("room", {"statefulSetName": "game"}))
    with caplog.at_level(logging.WARNING):
        await taken.take(route, [record("earlier", "")])
    assert taken.gone == {"earlier"}
    assert "event=census_failed namespace=games route=room" in caplog.text
