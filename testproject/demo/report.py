"""The demo's expensive computation, and a counter of how often it ran.

Nothing here knows about HTTP; the views call `compute_report` through the fence.
"""

import os
import time
from typing import Any

from django.core.cache import caches
from django.utils import timezone

REPORT_KEY = "demo:report"
REPORT_TIMEOUT = 30
# Kept in the backing cache, not the fenced one, so it counts computations of
# every process that shares the backing server, and survives mark_stale/delete.
COMPUTATIONS_KEY = "demo:computations"
COST_SECONDS = 0.2


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
    """Add one to the shared computation counter and return the new total."""
    backing = caches["backing"]
    # add() creates the key only if missing, so concurrent first callers do not
    # reset each other's increments; incr() is atomic on Redis and memcached.
    backing.add(COMPUTATIONS_KEY, 0, timeout=None)
    try:
        return backing.incr(COMPUTATIONS_KEY)
    except ValueError:  # evicted between add() and incr()
        backing.add(COMPUTATIONS_KEY, 1, timeout=None)
        return 1


def total_computations() -> int:
    """How many times `compute_report` has run, across processes sharing the backing cache."""
    return int(caches["backing"].get(COMPUTATIONS_KEY, 0))


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
