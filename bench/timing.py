"""Timing shared by the benchmarks: several code paths timed in turns, medians in ms."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def medians_ms(paths: dict[str, Callable[[], Any]], repeats: int, warmup: int = 10) -> dict[str, float]:
    """Median ms of each zero-argument callable over ``repeats`` rounds.

    The paths take turns within every round, so background load slows them alike; each timed
    call follows an untimed one of the same path, so none pays for caches its predecessor
    left cold. The first ``warmup`` rounds are not counted.
    """
    times: dict[str, list[float]] = {name: [] for name in paths}
    for index in range(repeats + warmup):
        for name, path in paths.items():
            path()
            start = time.perf_counter()
            path()
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) * 1000 for name, samples in times.items()}
