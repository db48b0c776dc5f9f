"""One way to time a piece of work: the median of repeats after a warm-up, waiting for the device. No framework."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable, sync: Callable, repeats: int) -> float:
    """Milliseconds ``fn()`` takes, median of ``repeats`` after one warm-up; ``sync(result)`` waits for the device."""
    sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
