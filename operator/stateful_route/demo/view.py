"""How the demo looks in a terminal: a live table of pods and a running story, then a summary."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stateful_route.controller.status import pod_state
from stateful_route.core.urls import redact_url
from stateful_route.demo.story import DisplayState
from stateful_route.demo.summary import Summary
from stateful_route.demo.traffic import FOLLOWED
from stateful_route.testing.sim import NS, ROUTE, STS

__all__ = ["admin_hint", "kubectl_hint", "live_display", "summary_table"]

STATE_STYLE = {"Ready": "green", "DenyNewCall": "yellow", "Shutdown": "red", "NotReady": "red", "gone": "dim",
               "Terminating": "magenta", "Outdated": "cyan"}  # fmt: skip


def _pods(live: DisplayState) -> Table:
    table = Table(title="StatefulRoute games/room", expand=False)
    for column, justify in (("pod", "left"), ("state", "left"), ("links", "right"), ("load", "right"),
                            ("best", "center")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    snapshot = live.snapshot
    if snapshot is None:
        return table
    for index in sorted(set(snapshot.pods) | live.present):
        pod = snapshot.pods.get(index)
        phase = live.phases.get(index)
        state = pod_state(pod, phase)
        if pod is not None and index not in live.present and not pod.alive:
            state = "gone"
        until = phase.terminating_until if phase is not None and state == "Terminating" else None
        shown = state if until is None else f"{state} ({max(0.0, until - time.time()):.1f}s left)"
        table.add_row(
            f"{STS}-{index}",
            Text(shown, style=STATE_STYLE.get(state, "")),
            f"{snapshot.links.get(index, 0):,}",
            str(pod.load if pod else 0),
            "★" if snapshot.best == index else "",
        )
    return table


def _render(live: DisplayState) -> Group:
    elapsed = time.monotonic() - live.started
    story = "\n".join(live.lines[-12:]) or "starting…"
    return Group(
        _pods(live),
        Panel(story, title=f"story — {elapsed:.0f}s of {live.duration:.0f}s", expand=False),
        Text(kubectl_hint(live), style="dim"),
        Text(admin_hint(live), style="dim"),
    )


def kubectl_hint(live: DisplayState) -> str:
    """How to watch and steer the emulated cluster with the real kubectl while the demo runs."""
    return f"kubectl: export KUBECONFIG={live.kubeconfig}; kubectl get sroute -w; kubectl get pods"


def admin_hint(live: DisplayState) -> str:
    """The admin commands that read the running demo's route table: its Redis and its own key
    prefix (without them they look under the default prefix and find no route table). A password
    in the URL is shown as ``***``, as everywhere else."""
    shown = redact_url(live.redis_url)
    target = f"--redis-url {shlex.quote(shown)} --prefix {shlex.quote(live.prefix)}"
    note = "; put the URL's password back for ***" if shown != live.redis_url else ""
    program = _program()
    return (
        f"key prefix: {live.prefix} (every key of this run, removed at its end{note})\n"
        f"inspect:  $ {program} pods {NS} {ROUTE} {target}\n"
        f"          $ {program} lookup {NS} {ROUTE} {FOLLOWED} {target}  # stays online"
    )


def _program() -> str:
    """How a shell runs this very stateful-route: its name if PATH finds this one (an activated
    virtualenv, pipx), else its path (``make demo`` runs .venv/bin/stateful-route)."""
    installed = Path(sys.executable).parent / "stateful-route"
    found = shutil.which("stateful-route")
    if not installed.exists() or (found is not None and Path(found).resolve() == installed.resolve()):
        return "stateful-route"
    return shlex.quote(str(installed))


@contextlib.contextmanager
def live_display(console: Console, live: DisplayState) -> Iterator[None]:
    """Redraw the pod table and the story four times a second while inside."""
    with Live(get_renderable=lambda: _render(live), console=console, refresh_per_second=4):
        yield


def summary_table(summary: Summary) -> Table:
    """The end-of-demo summary, invariants included."""
    table = Table(title="summary" + (" (interrupted)" if summary.interrupted else ""), show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("users placed", f"{summary.users_placed:,}"),
        ("lookups", f"{summary.lookups:,}"),
        ("evictions (links evicted)", f"{summary.evictions} ({summary.links_evicted:,})"),
        ("rebinds", f"{summary.rebinds:,}"),
        ("users moved (max moves per user)", f"{summary.users_moved:,} ({summary.max_moves})"),
        (
            "… by the rolling update (max; moved twice)",
            f"{summary.rollout_users_moved:,} ({summary.rollout_max_moves}; {summary.rollout_moved_twice:,})",
        ),
        ("NoAvailablePod", f"{summary.no_available_pod:,}"),
        ("PodPending (waiting for a replaced pod)", f"{summary.pod_pending:,}"),
        ("worst imbalance (max/mean links)", f"{summary.worst_imbalance:.2f}"),
        ("final imbalance", f"{summary.final_imbalance:.2f}"),
        ("lookup p50 / p99", f"{summary.p50_ms:.2f} ms / {summary.p99_ms:.2f} ms"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    for name, held in summary.invariants.items():
        table.add_row(name, Text("holds" if held else "BROKEN", style="green" if held else "bold red"))
    for error in summary.errors[:5]:
        table.add_row("error", Text(error, style="red"))
    return table
