"""``python -m bench [--quick] [--output BENCHMARKS.md]``: measure every figure, print the table."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench import figures, longest, mirror, opcost, operator_scale, placement, rollout, sharded
from bench.figures import Bench, Row, ratio
from bench.report import NOTES, machine, mark, markdown
from stateful_route.testing import local_redis

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True)


async def measure(bench: Bench) -> None:
    """Every figure, in order, appended to ``bench.rows``."""
    small, large = bench.scales
    rows = bench.rows

    if bench.wants("1") or bench.wants("2"):
        await _figures_1_and_2(bench)
    if bench.wants("8"):
        console.log("figure 8: placement against the number of pods")
        scales = [await placement.at_scale(bench, pods) for pods in POD_COUNTS]
        for at in scales:
            rows.append(_scale_row(at, scales[0]))
    if bench.wants("3"):
        await _figure_3(bench)
    if bench.wants("4"):
        await _figure_4(bench)
    if bench.wants("5"):
        await _figure_5(bench)
    if bench.wants("6"):
        await _figure_6(bench, small, large)
    if bench.wants("9"):
        await _figure_9(bench)
    if bench.wants("10"):
        await _figure_10(bench)
    if bench.wants("11"):
        await _figure_11(bench)
    if bench.wants("15"):
        await _figure_15(bench)
    if bench.wants("16"):
        await _figure_16(bench)
    if bench.wants("13") or bench.wants("14"):
        await _figures_13_and_14(bench)
    if "12" in bench.only:  # only when asked: it needs the control plane (`make control-plane`)
        await _figure_12(bench)
    if bench.wants("7"):
        console.log("figure 7: a rolling update of 6 pods")
        for variant in rollout.VARIANTS:
            moves = await rollout.measure(bench.url, variant, users=1_000 if bench.quick else 3_000, grace=4)
            rows.append(rollout.row(moves, baseline=not variant.aware))


async def _figures_1_and_2(bench: Bench) -> None:
    small, _ = bench.scales
    rows = bench.rows
    console.log("figure 1: cache hits")
    hits = await figures.cache_hits(bench, small)
    original_hits = await figures.original_cache_hits(bench, small)
    bare, awaited = await figures.dict_hits(bench, small)
    rows.append(
        Row(
            "1. cache-hit `compute_linked_pod` (ops/s)",
            f"{hits.ops:,.0f}",
            f"{original_hits.ops:,.0f}",
            f"dict {bare.ops:,.0f}; awaited dict {awaited.ops:,.0f}",
            f"{ratio(hits.ops, original_hits.ops)} original; {ratio(hits.ops, bare.ops)} dict",
            "≥ 5× original; ≥ 0.2× dict",
            hits.ops >= 5 * original_hits.ops and hits.ops >= 0.2 * bare.ops,
        )
    )

    get = await figures.get_limit(bench, bench.new_users)
    placements = {}
    for workers in (1, figures.WORKERS):
        console.log(f"figure 2: first placements, {workers} client(s)")
        placements[workers] = placed = await figures.first_placements(bench, workers)
        original = await figures.original_first_placements(bench, workers)
        limit = await figures.evalsha_limit(bench, workers, bench.new_users)
        rows.append(
            Row(
                f"2. first placement, {workers} client{'s' if workers > 1 else ''} (users/s)",
                placed.describe(),
                original.describe(),
                f"EVALSHA {limit.describe()}" + (f"; GET {get.describe()}" if workers == 1 else ""),
                ratio(placed.ops, limit.ops),
                "≥ 0.8× EVALSHA",
                placed.ops >= 0.8 * limit.ops,
            )
        )

    bench.at_small.update({"1": hits, "2": placements[1]})


async def _figure_3(bench: Bench) -> None:
    small, _ = bench.scales
    rows = bench.rows
    console.log("figure 3: batch of 10,000")
    batch, original_batch, mget = await figures.batches(bench, small)
    rows.append(
        Row(
            "3. `batch_get_linked_pod` of 10,000 (users/s)",
            f"{batch.ops:,.0f} ({10_000 / batch.ops * 1000:.1f} ms)",
            f"{original_batch.ops:,.0f}",
            f"MGET {mget.ops:,.0f}",
            f"{ratio(batch.ops, mget.ops)} MGET; {ratio(batch.ops, original_batch.ops)} original",
            "≥ 0.5× MGET; ≥ 50× original",
            batch.ops >= 0.5 * mget.ops and batch.ops >= 50 * original_batch.ops,
        )
    )
    bench.at_small["3"] = batch


async def _figure_4(bench: Bench) -> None:
    rows = bench.rows

    console.log(f"figure 4: balance of {bench.balance_users:,} new users")
    spread, original_spread = await figures.balance(bench)
    rows.append(
        Row(
            f"4. balance, {bench.balance_users:,} users, 8 pods, 16 clients (max/min links)",
            f"{spread:.3f}",
            f"{original_spread:.2f}",
            target="≤ 1.05",
            met=spread <= 1.05,
        )
    )

    console.log(f"figure 4b: balance of {bench.balance_users:,} new users while links expire")
    scores, links, expired = await placement.balance_while_expiring(bench)
    rows.append(
        Row(
            "4b. the same with 2 s links expiring and pods reporting loads 0-19 (max/min links + load)",
            f"{scores:.3f} (links alone {links:.3f}; {expired:,} links expired during the run)",
            target="≤ 1.05",
            met=scores <= 1.05,
        )
    )


async def _figure_5(bench: Bench) -> None:
    rows = bench.rows
    console.log("figure 5: eviction of 100,000 links")
    removed, rebound = await figures.eviction(bench)
    rows.append(
        Row("5a. evict a pod of 100,000 links (s)", f"{removed:.2f}", target="≤ 2 s", met=removed <= 2)
    )
    rows.append(
        Row("5b. the same, rebinding eagerly (s)", f"{rebound:.2f}", target="≤ 5 s", met=rebound <= 5)
    )


async def _figure_6(bench: Bench, small: int, large: int) -> None:
    """Memory per link; figures 1-3 again at the large size when this run measured them."""
    rows = bench.rows
    console.log(f"figure 6: memory per link, figures 1-3 at {large:,} users")
    per_link, original_per_link = await figures.memory_per_link(bench, large)
    rows.append(
        Row(
            f"6. Redis memory per link, {large:,} links (bytes)",
            f"{per_link:.0f}",
            f"{original_per_link:.0f}",
            target="≤ 200",
            met=per_link <= 200,
        )
    )
    if len(bench.at_small) < 3:
        return
    hits, placed, batch = bench.at_small["1"], bench.at_small["2"], bench.at_small["3"]
    hits_large = await figures.cache_hits(bench, large)
    placed_large = await figures.first_placements(bench, 1, holding=large)
    batch_large, _, _ = await figures.batches(bench, large)
    for name, at_small, at_large in (
        ("1. cache hits (ops/s)", hits, hits_large),
        ("2. first placement, 1 client (users/s)", placed, placed_large),
        ("3. batch of 10,000 (users/s)", batch, batch_large),
    ):
        rows.append(
            Row(
                f"6. {name}, {small:,} → {large:,} users",
                f"{at_small.ops:,.0f} → {at_large.ops:,.0f}",
                ratio=ratio(at_large.ops, at_small.ops),
            )
        )


async def _figure_9(bench: Bench) -> None:
    links = 100_000 if bench.quick else 1_000_000
    console.log(f"figure 9: the longest command after {links:,} links expired on one pod")
    for phase in await longest.measure(bench, links):
        bench.rows.append(
            Row(
                f"9. longest single command, {links:,} expired links on one pod: {phase.name}",
                f"{phase.longest_ms:.2f} ms ({phase.command}; p99 of {phase.calls:,} script calls "
                f"{phase.p99_ms:.2f} ms; {phase.seconds:.2f} s in all)",
                target=f"≤ {longest.GOAL_MS:g} ms",
                met=phase.longest_ms <= longest.GOAL_MS,
            )
        )


async def _figure_10(bench: Bench) -> None:
    unknown = 1_000 if bench.quick else 5_000
    console.log(f"figure 10: an idle gateway after {unknown:,} names without a route")
    idle = await mirror.idle_gateway(bench, unknown)
    bench.rows.append(
        Row(
            f"10. idle gateway after lookups of {unknown:,} names without a route and 1 route "
            "(views kept; commands/s)",
            f"{idle.views:,} view{'' if idle.views == 1 else 's'}; {idle.per_second:,.1f} commands/s",
            target="1 view; ≤ 2 commands/s per followed route",
            met=idle.views == 1 and idle.per_second <= 2.5,
        )
    )


async def _figure_11(bench: Bench) -> None:
    rate, routes, seconds = 4_000, 100, 5 if bench.quick else 10
    console.log(f"figure 11: the change channel under {rate:,} table writes/s")
    flood = await mirror.flood(bench, rate, routes, seconds)
    change, view = flood.change, flood.view
    bench.rows.append(
        Row(
            f"11. change channel, {rate:,} table writes/s asked over {routes} routes for {seconds} s "
            "(lag from publication: p50 / p99 / max)",
            f"{flood.writes:,} writes at {flood.rate:,.0f}/s; routability {change[0] * 1000:.0f} / "
            f"{change[1] * 1000:.0f} / {change[2] * 1000:.0f} ms; whole view {view[0] * 1000:.0f} / "
            f"{view[1] * 1000:.0f} / {view[2] * 1000:.0f} ms; {flood.reads_per_message:.2f} reads per "
            f"message; every view latest {flood.caught_up * 1000:.0f} ms after the last write; gateway "
            f"CPU {flood.cpu_us:.0f} µs per message",
            target=f"latest state ≤ {mirror.GOAL_LAG * 1000:.0f} ms after publication",
            met=view[2] <= mirror.GOAL_LAG,
        )
    )


async def _figure_15(bench: Bench) -> None:
    routes = 10_000
    console.log(f"figure 15: an idle gateway's full mirror pass over {routes:,} routes")
    done = await mirror.full_pass(bench, routes, seconds=5 if bench.quick else 10)
    passes = sorted(done.passes) or [float("inf")]
    p50, worst = passes[len(passes) // 2], passes[-1]
    bench.rows.append(
        Row(
            f"15. an idle gateway's full mirror pass over {routes:,} routes of 4 pods (seconds: p50 / "
            f"max of {len(done.passes)} passes; oldest view seen)",
            f"{p50:.2f} / {worst:.2f} s; oldest view {done.oldest:.2f} s (max_age {done.max_age:g} s); "
            f"CPU per pass: gateway {done.cpu:.2f} s, Redis {done.redis_cpu:.2f} s "
            f"({done.redis_us:.1f} µs per script call); {done.per_second:,.0f} commands/s; "
            f"oldest snapshot (counts, best pod) {done.oldest_whole:.2f} s",
            target=f"≤ {mirror.GOAL_PASS:g} s; no view older than max_age",
            met=worst <= mirror.GOAL_PASS and done.oldest <= done.max_age,
        )
    )


async def _figure_16(bench: Bench) -> None:
    users = 4_000 if bench.quick else 12_000
    console.log(f"figure 16: a route sharded over 3 Redis Cluster masters, 3 rounds of {users:,} users")
    one, three = await sharded.measure(users)
    share = max(three.users) / (sum(three.users) / len(three.users))
    for i, (alone, spread) in enumerate(zip(one.phases, three.phases, strict=True)):
        scale = spread.capacity / alone.capacity
        balance = f"; balance {three.balance:.3f} (K = 1: {one.balance:.3f})" if i == 0 else ""
        masters = ", ".join(f"{u / spread.ops:.1f}" for u in sorted(spread.usec, reverse=True))
        bench.rows.append(
            Row(
                f"16. one route over 3 Cluster masters (K = 3 sub-routes by uid hash) against one "
                f"master: {alone.name}, 3 × {users:,} users (capacity: ops/s of the busiest master's "
                "CPU)",
                f"{spread.capacity:,.0f}/s (CPU µs per op on each master {masters}; scripts alone "
                f"{spread.script_capacity:,.0f}/s; one client {spread.ops / spread.seconds:,.0f}/s){balance}",
                limit=f"one master {alone.capacity:,.0f}/s ({alone.usec_per_op:.1f} CPU µs per op; scripts "
                f"alone {alone.script_capacity:,.0f}/s; one client {alone.ops / alone.seconds:,.0f}/s); "
                f"ideal {len(three.users) / share:.2f}× (busiest sub-route {share:.3f}× the mean)",
                ratio=f"{ratio(spread.capacity, alone.capacity)} CPU; "
                f"{ratio(spread.script_capacity, alone.script_capacity)} scripts",
                target=f"≥ {sharded.GOAL_SCALE}× one master; balance ≤ {sharded.GOAL_BALANCE}",
                met=scale >= sharded.GOAL_SCALE and three.balance <= sharded.GOAL_BALANCE,
            )
        )


async def _figures_13_and_14(bench: Bench) -> None:
    for pods in opcost.POD_COUNTS:
        console.log(f"figures 13 and 14: Redis µs per operation and capacity, {pods} pods")
        bench.rows.extend(await opcost.rows(bench, pods))


async def _figure_12(bench: Bench) -> None:
    """The operator against a real control plane (its binaries: ``make control-plane``)."""
    with tempfile.TemporaryDirectory(prefix="sr-scale-") as folder:
        scale = await operator_scale.measure(Path(folder), bench.url)
    operator_scale.report(scale)
    bench.rows.extend(operator_scale.rows(scale))


POD_COUNTS = (8, 32, 128, 512)


def _scale_row(at: placement.AtScale, smallest: placement.AtScale) -> Row:
    """Figure 8 at one size; the goals: one client ≥ 0.8× a no-op EVALSHA at 8 pods and ≥ 0.7×
    at 512, and Redis time per placement at 512 pods within 1.5× of that at 8."""
    floor = 0.8 if at.pods == smallest.pods else 0.7
    growth = at.server_us / smallest.server_us
    met = at.one.ops >= floor * at.noop.ops and growth <= 1.5
    return Row(
        f"8. placement, {at.pods} pods (users/s 1 client; 16 clients; Redis µs per placement)",
        f"{at.one.ops:,.0f}; {at.many.ops:,.0f}; {at.server_us:.1f} µs",
        f"{at.original_one.ops:,.0f}; {at.original_many.ops:,.0f}; {at.original_server_us:.1f} µs",
        f"EVALSHA {at.noop.ops:,.0f}/s",
        f"{ratio(at.one.ops, at.noop.ops)} EVALSHA; Redis µs {growth:.2f}× of {smallest.pods} pods",
        f"≥ {floor}× EVALSHA; ≤ 1.5× Redis µs of {smallest.pods} pods",
        met,
    )


async def _redis_version(url: str) -> str:
    redis = Bench(url, quick=True).redis(1)
    try:
        return str((await redis.info("server"))["redis_version"])
    finally:
        await redis.aclose()


@app.command()
def main(
    quick: Annotated[bool, typer.Option(help="Smaller sizes: the whole run in under 2 minutes.")] = False,
    redis_url: Annotated[str | None, typer.Option(envvar="REDIS_URL")] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the results here (Markdown).")] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Measure only this figure (1-16; 1 and 2 go together, 13 and 14 too; 12 only when "
            "named: it needs the control plane); repeatable."
        ),
    ] = None,
) -> None:
    """Measure every figure of BENCHMARKS.md against one Redis and print the table."""
    with local_redis.redis_url(redis_url) as url:
        bench = Bench(url, quick, only=frozenset(only or ()))
        asyncio.run(measure(bench))
        about = machine(asyncio.run(_redis_version(url)))
    out = Console()
    table = Table("figure", "ours", "original", "limit", "ratio", "target", "met?")
    for r in bench.rows:
        table.add_row(r.figure, r.ours, r.original, r.limit, r.ratio, r.target, mark(r.met))
    out.print(table)
    if output is not None:
        command = "make bench" + (" ARGS=--quick" if quick else "")
        notes = output.read_text().partition(NOTES)[2] if output.exists() else ""
        output.write_text(markdown(bench.rows, command=command, about=about) + f"\n{NOTES}{notes}")


if __name__ == "__main__":
    app()
