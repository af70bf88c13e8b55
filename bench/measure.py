"""Timing helpers: throughput of a loop, latency percentiles, and concurrent runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["Result", "concurrently", "per_call", "rate_async", "rate_sync"]


@dataclass(frozen=True)
class Result:
    """Operations per second, with per-call p50/p99 in microseconds when measured."""

    ops: float
    p50_us: float | None = None
    p99_us: float | None = None

    def describe(self) -> str:
        text = f"{self.ops:,.0f}/s"
        if self.p50_us is not None and self.p99_us is not None:
            text += f" (p50 {self.p50_us:,.0f} µs, p99 {self.p99_us:,.0f} µs)"
        return text


def _percentile(sorted_ns: Sequence[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def rate_sync(step: Callable[[int], object], n: int, repeat: int = 3) -> Result:
    """Best of ``repeat`` runs of ``step(i)`` for i in range(n): throughput only (too fast to time
    one call)."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(n):
            step(i)
        best = max(best, n / (time.perf_counter() - start))
    return Result(best)


async def rate_async(step: Callable[[int], Awaitable[object]], n: int, repeat: int = 3) -> Result:
    """Best of ``repeat`` runs of ``await step(i)``: throughput only."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(n):
            await step(i)
        best = max(best, n / (time.perf_counter() - start))
    return Result(best)


async def per_call(step: Callable[[int], Awaitable[object]], items: Sequence[int]) -> tuple[float, list[int]]:
    """Run ``step`` over ``items`` one after another: (elapsed seconds, each call in ns)."""
    took: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i in items:
        t0 = clock()
        await step(i)
        took.append(clock() - t0)
    return time.perf_counter() - start, took


async def concurrently(step: Callable[[int], Awaitable[object]], n: int, workers: int) -> Result:
    """``n`` calls of ``step`` shared by ``workers`` tasks: total throughput and per-call latency."""
    shares = [range(w, n, workers) for w in range(workers)]
    start = time.perf_counter()
    runs = await asyncio.gather(*(per_call(step, share) for share in shares))
    elapsed = time.perf_counter() - start
    took = sorted(ns for _, calls in runs for ns in calls)
    return Result(n / elapsed, _percentile(took, 0.5), _percentile(took, 0.99))
