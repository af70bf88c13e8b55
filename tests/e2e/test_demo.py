"""`stateful-route demo` runs to completion on a short story and its summary holds up."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from stateful_route.cli import app


def test_the_demo_runs_its_story_and_every_invariant_holds(redis_url):
    result = CliRunner().invoke(
        app,
        ["demo", "--redis-url", redis_url, "--duration", "8", "--pods", "4", "--users", "400", "--seed", "3",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["users_placed"] > 0
    assert summary["lookups"] > summary["users_placed"]
    assert summary["errors"] == []
    assert summary["no_available_pod"] == 0
    # The deleted pod's users were evicted, and every one of them was rebound.
    assert summary["evictions"] >= 1
    assert summary["links_evicted"] > 0
    assert summary["rebinds"] == summary["links_evicted"]
    assert all(summary["invariants"].values())
    assert len(summary["story"]) == 6
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
