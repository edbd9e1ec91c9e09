"""The in-process A/B loop shared by the benchmarks that time two versions of the same code side by side
(bench/record_path.py, bench/stream_ab.py, bench/upstream_ab.py). No side effects on import."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any


def alternating_cpu(calls: Mapping[str, Callable[[], Any]], rounds: int, count: int,
                    warm: int = 0) -> dict[str, list[float]]:
    """The in-process A/B loop: `warm` calls of each, then `rounds` blocks of `count` calls of each version, the
    order swapped every round ("old" first in even rounds), timed by this thread's CPU clock. Returns each
    version's microseconds of CPU per call, one figure a block."""
    for call in calls.values():
        for _ in range(warm):
            call()
    names = list(calls)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            call = calls[name]
            started = time.thread_time_ns()
            for _ in range(count):
                call()
            results[name].append((time.thread_time_ns() - started) / count / 1000)
    return results
