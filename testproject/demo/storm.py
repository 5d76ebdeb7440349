"""A stampede on purpose: many threads call get_or_set on one cold key at once."""

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.core.cache import caches, close_caches

from .report import COST_SECONDS

logger = logging.getLogger(__name__)

STORM_SIZE = 50
STORM_TIMEOUT = 30


@dataclass(frozen=True)
class StormResult:
    """What a storm did: how many callers, computations, distinct values and errors."""

    callers: int
    computations: int
    distinct_values: int
    errors: int
    seconds: float


def run_storm(callers: int = STORM_SIZE, alias: str = "default") -> StormResult:
    """Let `callers` threads call ``caches[alias].get_or_set`` on a fresh key together.

    A stampede-proof cache runs the computation once; a plain cache runs it
    about once per caller.
    """
    key = f"demo:storm:{uuid.uuid4().hex}"
    lock = threading.Lock()
    runs = 0
    # Every thread waits here so that all calls land on the cold key at once.
    start_line = threading.Barrier(callers, timeout=10)

    def compute() -> str:
        nonlocal runs
        with lock:
            runs += 1
        time.sleep(COST_SECONDS)
        return uuid.uuid4().hex

    def call() -> str:
        start_line.wait()
        try:
            return caches[alias].get_or_set(key, compute, STORM_TIMEOUT)
        finally:
            # caches[...] is per thread; close what this thread opened, as
            # Django does at the end of a request.
            close_caches()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=callers, thread_name_prefix="storm") as pool:
        futures = [pool.submit(call) for _ in range(callers)]
    values, errors = set(), 0
    for future in futures:
        if (exc := future.exception()) is not None:
            errors += 1
            logger.error("storm caller failed on %s", key, exc_info=exc)
        else:
            values.add(future.result())
    return StormResult(callers, runs, len(values), errors, time.perf_counter() - started)
