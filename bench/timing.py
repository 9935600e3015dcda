"""Side-by-side timing: warm up, alternate the contenders, take medians of several rounds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def compare(
    contenders: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender, measured in alternation (A B A B ...).

    Every contender runs ``warmup`` times first; then ``repeats`` rounds, each calling every
    contender once in turn (the order rotates each round), so a slow spell of a shared
    machine hits all of them alike.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}

