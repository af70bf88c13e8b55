"""`stateful-route demo` runs to completion on a short story, its summary holds up, and Ctrl-C
stops it cleanly."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from stateful_route.cli.app import app


def test_the_demo_runs_its_story_and_every_invariant_holds(redis_url):
    result = CliRunner().invoke(
        app,
        ["demo", "--redis-url", redis_url, "--duration", "8", "--pods", "4", "--users", "400", "--seed", "3",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert "kubectl: export KUBECONFIG=/" in result.stderr  # how to watch it with kubectl
    assert summary["users_placed"] > 0
    assert summary["lookups"] > summary["users_placed"]
    assert summary["errors"] == []
    assert summary["no_available_pod"] == 0
    # The deleted pod's users were evicted, and every one of them was rebound.
    assert summary["evictions"] >= 1
    assert summary["links_evicted"] > 0
    assert summary["rebinds"] == summary["links_evicted"]
    assert all(summary["invariants"].values())
    assert len(summary["story"]) == 7
    # The rolling update moved users (every pod was replaced), none more than once: users of the
    # first replaced pod who came back before its replacement was Ready waited for it (PodPending).
    assert summary["rollout_users_moved"] > 0
    assert summary["rollout_max_moves"] == 1
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]


def test_ctrl_c_stops_the_demo_cleanly_with_a_summary(redis_url):
    script = Path(sys.executable).parent / "stateful-route"  # the installed console script
    command = [str(script), "demo", "--redis-url", redis_url, "--duration", "60", "--json"]
    # A child of a non-interactive shell may inherit SIGINT ignored; give it the default, like a terminal.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(6)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert summary["users_placed"] > 0
    assert all(summary["invariants"].values())
    with redis.Redis.from_url(redis_url) as client:
        assert list(client.scan_iter(match="demo-*")) == []  # its keys are gone


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_demo_like_ctrl_c(private_redis, signum):
    """``timeout``, a cancelled CI job or ``docker stop`` send SIGTERM; a closed terminal SIGHUP.
    A private Redis: every key left under ``demo-*`` is then this run's."""
    server = private_redis()
    script = Path(sys.executable).parent / "stateful-route"
    command = [str(script), "demo", "--redis-url", server.url, "--duration", "60", "--users", "500", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with redis.Redis.from_url(server.url) as client:
        deadline = time.monotonic() + 30
        while not list(client.scan_iter(match="demo-*:{*}:l:*", count=1000)):  # users are placed
            assert time.monotonic() < deadline, "the demo placed nobody"
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, err.decode()[-2000:]
        summary = json.loads(out)
        assert summary["interrupted"] is True
        assert summary["users_placed"] > 0
        assert list(client.scan_iter(match="demo-*")) == []  # not one key left, TTL or not


@pytest.mark.cluster
@pytest.mark.slow
def test_the_demo_runs_on_a_redis_cluster(redis_cluster_url):
    result = CliRunner().invoke(
        app,
        ["demo", "--redis-url", redis_cluster_url, "--duration", "6", "--pods", "4", "--users", "300",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["users_placed"] > 0


def test_the_printed_admin_commands_inspect_the_running_demo(private_redis):
    """The demo prints its key prefix and the admin commands that read its route table; run as
    printed (plus --json) while it runs, they show its pods and a user's link. Its stdout stays
    pure JSON."""
    server = private_redis()
    script = Path(sys.executable).parent / "stateful-route"
    command = [str(script), "demo", "--redis-url", server.url, "--duration", "60", "--pods", "4",
               "--users", "300", "--json"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        hints: list[str] = []
        while len([h for h in hints if "$ " in h]) < 2:  # printed once the operator runs
            line = process.stderr.readline()
            assert line, "the demo ended before printing its commands: " + "".join(hints)
            hints.append(line)
        (prefix_line,) = [h for h in hints if h.startswith("key prefix: ")]
        prefix = prefix_line.split()[2]
        assert prefix.startswith("demo-")
        commands = [shlex.split(h.split("$ ", 1)[1], comments=True) for h in hints if "$ " in h]
        assert [c[1] for c in commands] == ["pods", "lookup"]
        for printed in commands:  # this very program, as a shell finds it, and this run's Redis and prefix
            assert Path(shutil.which(printed[0]) or printed[0]).resolve() == script.resolve()
            assert printed[printed.index("--redis-url") + 1] == server.url
            assert printed[printed.index("--prefix") + 1] == prefix

        def run(printed: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(script), *printed[1:], "--json"], capture_output=True, text=True, timeout=60, check=False
            )

        pods, lookup = commands
        deadline = time.monotonic() + 30
        while True:  # the table is there at once; users arrive as the traffic starts
            shown = run(pods)
            assert shown.returncode == 0, shown.stderr
            rows = json.loads(shown.stdout)
            if sum(r["links"] for r in rows) > 0:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
        assert {r["pod"] for r in rows} == {0, 1, 2, 3}
        deadline = time.monotonic() + 10
        while (found := run(lookup)).returncode == 1:  # 1: no link, for an instant after an eviction
            assert time.monotonic() < deadline, found.stdout
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["pod"] in range(5)  # the scale-up adds pod 4
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err[-2000:]
    assert json.loads(out)["interrupted"] is True  # stdout: the JSON summary alone
