"""The expensive parts of the three fenced pages, each counting its runs.

Each takes COST_SECONDS and returns a small visible result; the views put them
behind ``@fenced_cache_page``, ``{% fencedcache %}`` and ``@fenced``.
"""

import os
import time
from typing import Any

from django.utils import timezone

from django_fence import fenced

from .counters import count_run
from .report import COST_SECONDS, primes_after

#: Seconds each page, fragment and memoized result stays fresh.
TIMEOUT = 30
#: The counter names of the three parts (see counters.py).
PAGE, FRAGMENT, FENCED = "page", "fragment", "fenced"
#: The fragment's name in ``{% fencedcache %}``, for make_template_fragment_key().
FRAGMENT_NAME = "demo-fragment"
#: The argument the fenced page calls ``fenced_primes`` with.
PRIME_COUNT = 5


def slow_result(counter: str, prime_count: int = PRIME_COUNT) -> dict[str, Any]:
    """COST_SECONDS of sleep, counted under `counter`: which run this was, when and where."""
    started = time.perf_counter()
    time.sleep(COST_SECONDS)  # the deliberate cost that makes a stampede hurt
    now = timezone.now()
    return {
        "run": count_run(counter),
        "computed_at": now,
        "primes": primes_after(int(now.timestamp()), prime_count),
        "pid": os.getpid(),
        "seconds": time.perf_counter() - started,
    }


def render_page_part() -> dict[str, Any]:
    """The expensive part of the page under ``@fenced_cache_page``."""
    return slow_result(PAGE)


def build_fragment() -> dict[str, Any]:
    """The expensive part of the fragment; the template calls it inside ``{% fencedcache %}`` only."""
    return slow_result(FRAGMENT)


@fenced(TIMEOUT, key="demo:fenced-primes")
def fenced_primes(prime_count: int) -> dict[str, Any]:
    """Memoized through the fence: one run per expiry and argument, across processes."""
    return slow_result(FENCED, prime_count)
