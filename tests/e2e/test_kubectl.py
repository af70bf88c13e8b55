"""The real kubectl against the emulated cluster with the real operator: what the demo promises a
user who wants to watch and steer it (``kubectl get sroute -w``, ``get pods``, ``describe``,
``annotate``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

from stateful_route.testing.apiserver import age, matches_selector
from stateful_route.testing.sim import NS, ROUTE, Cluster
from tests.e2e.test_route_lifecycle import running_route
from tests.routes import poll_until
from tests.tools import KUBECTL


def environment(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}


async def kubectl(cluster: Cluster, cache: Path, *args: str) -> tuple[int, str, str]:
    """Run kubectl against the emulator (its discovery cached in the test's own folder).

    In a thread, not as an asyncio subprocess: the test's event loop closes when the test ends, and
    pipe transports whose closing it had not yet run would then warn (an error here) in a later test."""
    done = await asyncio.to_thread(
        subprocess.run, [KUBECTL, "--cache-dir", str(cache), *args],
        env=environment(cluster), capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.strip().splitlines()]


async def test_kubectl_gets_describes_annotates_and_watches_the_emulated_cluster(
    cluster, redis, redis_url, prefix, tmp_path
):
    cache = tmp_path / "kubectl-cache"
    async with running_route(cluster, redis, redis_url, prefix, 3, rebind="Eager") as (table, client):

        async def status_summary(wanted: str) -> bool:
            return ((await cluster.route()).get("status") or {}).get("summary") == wanted

        await poll_until(lambda: status_summary("3/3"), within=10, every=0.1)

        # The CRD's printer columns, as the API server renders them; no short-name warning.
        code, out, err = await kubectl(cluster, cache, "get", "sroute")
        assert (code, err) == (0, "")
        assert rows(out)[0] == ["NAME", "SERVICE", "ROUTABLE", "BEST", "LINKS", "AGE"]
        assert rows(out)[1][:5] == ["room", "room", "3/3", "0", "0"]
        # Lists carry their kind (kubectl refused them without it).
        code, out, err = await kubectl(cluster, cache, "get", "statefulroutes", "-o",
                                       "jsonpath={.items[*].status.summary}")  # fmt: skip
        assert (code, out, err) == (0, "3/3", "")

        code, out, err = await kubectl(cluster, cache, "get", "pods")
        assert (code, err) == (0, "")
        assert [r[:4] for r in rows(out)] == [
            ["NAME", "READY", "STATUS", "RESTARTS"],
            *([f"game-{i}", "1/1", "Running", "0"] for i in range(3)),
        ]
        code, out, _ = await kubectl(cluster, cache, "get", "po", "-l", "app=game", "-o", "name")
        assert (code, out.split()) == (0, [f"pod/game-{i}" for i in range(3)])

        # Steering: a drain by annotation reaches the route table through the operator.
        code, out, err = await kubectl(
            cluster, cache, "annotate", "pod", "game-2", "stateful-route.dev/routing-state=DenyNewCall"
        )
        assert (code, out.strip()) == (0, "pod/game-2 annotated"), err

        async def drained() -> bool:
            return sorted((await table.snapshot(NS, ROUTE)).available) == [0, 1]

        await poll_until(drained, within=10, every=0.05)

        # Watching: the first row, then a new row when a deleted pod's users are evicted.
        for uid in range(6):
            await client.compute_linked_pod(NS, f"u{uid}", ROUTE)
        watch = await asyncio.create_subprocess_exec(
            KUBECTL, "--cache-dir", str(cache), "get", "sroute", "-w",
            env=environment(cluster), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert watch.stdout is not None
        try:
            seen = [await asyncio.wait_for(watch.stdout.readline(), 10) for _ in range(2)]
            assert seen[0].split()[:3] == [b"NAME", b"SERVICE", b"ROUTABLE"]
            assert seen[1].split()[:3] == [b"room", b"room", b"3/3"]
            code, _, err = await kubectl(cluster, cache, "delete", "pod", "game-0")
            assert code == 0, err
            async with asyncio.timeout(10):
                while b"2/2" not in (line := await watch.stdout.readline()):
                    assert line, "kubectl's watch ended"
            assert line.split()[:3] == [b"room", b"room", b"2/2"]
        finally:
            watch.terminate()
            await watch.communicate()  # to EOF, so its pipe's transport is closed by this test's loop

        # Describing: the status and the operator's events about this route (only those).
        async def evicted_described() -> bool:
            code, out, _ = await kubectl(cluster, cache, "describe", "sroute", "room")
            return code == 0 and "Evicted" in out

        await poll_until(evicted_described, within=10, every=0.3)
        other = {"metadata": {"name": "other", "namespace": NS}, "reason": "Unrelated", "message": "not ours",
                 "involvedObject": {"kind": "Pod", "name": "game-1", "namespace": NS}}  # fmt: skip
        async with cluster.api.request("POST", f"/api/v1/namespaces/{NS}/events", json=other) as response:
            assert response.status < 300, await response.text()
        _, out, _ = await kubectl(cluster, cache, "describe", "sroute", "room")
        assert "evicted 3 links from pod 0: deleted; rebound 3" in out
        assert "Unrelated" not in out
        assert re.search(r"^  Summary:\s+2/2$", out, re.MULTILINE), out
        _, out, _ = await kubectl(cluster, cache, "get", "events", "-o", "name")
        assert "event/other" in out.split()


def test_selectors_match_as_the_api_server_does():
    event = {"involvedObject": {"name": "room", "kind": "StatefulRoute"}, "metadata": {"labels": {"a": "1"}}}
    assert matches_selector(event, "involvedObject.name=room,involvedObject.kind==StatefulRoute", fields=True)
    assert not matches_selector(event, "involvedObject.name=other", fields=True)
    assert matches_selector(event, "involvedObject.name!=other", fields=True)
    assert matches_selector(event, "a=1,a,!b", fields=False)
    assert not matches_selector(event, "a!=1", fields=False)
    assert not matches_selector(event, "b", fields=False)
    assert matches_selector(event, "", fields=False)


def test_ages_read_like_kubectls():
    import datetime

    now = datetime.datetime(2026, 1, 2, 12, 0, 0, tzinfo=datetime.UTC)
    ago = {5: "5s", 119: "119s", 192: "3m12s", 300: "5m", 17 * 60: "17m", 5 * 3600: "5h", 3 * 86400: "3d"}
    for seconds, shown in ago.items():
        born = (now - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert age(born, now) == shown
    assert age(None, now) == "<unknown>"
