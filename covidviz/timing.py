"""Wall-clock timing, the one way it is done here (the benchmarks, the engine choice, the bf16 probe): a warm-up
call, then the median of repeated calls; a peak (what the hardware can do at best) takes the fastest call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()  # warm-up: the first call pays for allocation and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_seconds(fn: Callable[[], Any], repeats: int = 10) -> float:
    """The fastest wall time of ``fn`` over ``repeats`` calls, after one warm-up call: for a peak, which a busy
    machine can only lower, never raise (medians of a 512x512 product moved 28% between two quiet runs)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn within every round: when the machine's load changes
    during a run, every contender sees the same changes, so their ratios stay fair."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
