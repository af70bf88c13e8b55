"""Release 0.1.0 and this one side by side on one route, under churn (stateful_route.testing.mixed).

Gateways of both releases answer, pods of both place, confirm, remove and hand off the same
guests, and the operator is upgraded from 0.1.0 to this release half way through; judged as the
churn test is. The seed is printed; ``SR_MIXED_RELEASES_SEED=<seed>`` replays the choices (not the
timing). ``make chaos ARGS=--mixed`` runs it longer.
"""

from __future__ import annotations

import os
import random

from stateful_route.testing.mixed import mixed_releases

SECONDS = 24
USERS = 2_000


async def test_0_1_0_and_this_release_keep_the_promise_together(
    cluster, redis, make_redis, redis_url, prefix, tmp_path
):
    seed = int(os.environ.get("SR_MIXED_RELEASES_SEED", random.randrange(1 << 30)))
    print(f"\nmixed releases seed {seed} (SR_MIXED_RELEASES_SEED={seed} replays the choices)", flush=True)
    run = await mixed_releases(
        cluster, redis, make_redis, redis_url, prefix, tmp_path, seed=seed, seconds=SECONDS, users=USERS,
        pause=0.05,
    )  # fmt: skip
    print(run.summary())
    assert run.problems == [], run.problems[:10]
    # Both releases answered, acted and were judged; the churn and the checks really happened.
    assert min(run.answers.values()) > 2_000, run.answers
    for release in ("0.1.0", "N"):
        for action in ("place", "persist", "try", "remove", "remove_id", "handoff"):
            assert run.succeeded(release, action) > 0, (release, action, run.actions)
    assert run.layouts == [None, 2]  # 0.1.0's operator records none; this one migrated the route
    assert run.count_checks >= 8
    assert sum(run.episodes.values()) >= 10
