"""Closed-loop latency measurement shared by the benchmarks."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def p50_p99_line(what: str, samples: list[float]) -> str:
    """One line of a latency report: what, how many, p50 and p99 in milliseconds."""
    return (
        f"{what:<58} n={len(samples):<4} p50 {percentile(samples, 50):7.2f} ms"
        f"   p99 {percentile(samples, 99):7.2f} ms"
    )


async def measure(
    name: str, clients: int, total: int, call: Callable[[int], Awaitable[None]]
) -> list[float]:
    """Run `total` calls from `clients` concurrent loops; print and return the latencies (ms)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def run_client() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(run_client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    print(
        f"{name:<26} n={len(latencies):>5}  {len(latencies) / elapsed:8.1f} req/s  "
        f"p50={percentile(latencies, 50):7.2f} ms  p95={percentile(latencies, 95):7.2f} ms  "
        f"p99={percentile(latencies, 99):7.2f} ms  mean={statistics.fmean(latencies):7.2f} ms",
        flush=True,
    )
    return latencies
