"""The demo's expensive computation, and a counter of how often it ran.

Nothing here knows about HTTP; the views call `compute_report` through the fence.
"""

import os
import time
from typing import Any

from django.utils import timezone

from .counters import count_run, total_runs

REPORT_KEY = "demo:report"
REPORT_TIMEOUT = 30
COST_SECONDS = 0.2
COUNTER = "report"


def primes_after(start: int, count: int) -> list[int]:
    """Return the first `count` primes greater than `start`, by trial division."""
    primes: list[int] = []
    candidate = start
    while len(primes) < count:
        candidate += 1
        if candidate > 1 and all(candidate % d for d in range(2, int(candidate**0.5) + 1)):
            primes.append(candidate)
    return primes


def count_computation() -> int:
    """Add one to the report's shared computation counter and return the new total."""
    return count_run(COUNTER)


def total_computations() -> int:
    """How many times `compute_report` has run, across processes sharing the backing cache."""
    return total_runs(COUNTER)


def compute_report() -> dict[str, Any]:
    """The expensive part of the demo page: 200 ms of sleep plus a small visible result."""
    started = time.perf_counter()
    time.sleep(COST_SECONDS)  # the deliberate cost that makes a stampede hurt
    now = timezone.now()
    epoch = int(now.timestamp())
    return {
        "computed_at": now,
        "epoch": epoch,
        "primes": primes_after(epoch, 5),
        "run": count_computation(),
        "pid": os.getpid(),
        "seconds": time.perf_counter() - started,
    }
