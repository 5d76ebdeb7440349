"""Counters of what the fence did, shared by every process through the wrapped cache.

A hit must stay one round trip, so nothing is written on the request path:
each process counts in memory and a daemon thread adds its counts to the
shared counters (atomic ``incr``) every ``STATS_INTERVAL`` seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable

from django.core.cache.backends.base import BaseCache

from .conf import fence_settings

logger = logging.getLogger(__name__)

NAMES = (
    "hits", "misses", "stale_served", "early_refreshes", "recomputes",
    "lock_waits", "wait_timeouts", "errors", "recompute_microseconds",
)  # fmt: skip


class Stats:
    """Counts for one FencedCache alias; ``snapshot()`` sums every process's counts."""

    def __init__(self, cache: Callable[[], BaseCache], alias: str) -> None:
        self._cache = cache  # a getter: Django's caches are per thread, and the flusher has its own
        self.prefix = f"fence-stats:{alias}:"
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher_pid: int | None = None

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._pending[name] += amount
        if self._flusher_pid != os.getpid():
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, daemon=True, name="fence-stats").start()
        atexit.register(self._flush_quietly)  # a process that exits keeps its last counts

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:
            logger.debug("fence stats: final flush failed", exc_info=True)

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait(fence_settings().STATS_INTERVAL)
            self._wake.clear()
            self._flush_quietly()  # the stats never take a request down; unwritten counts are retried

    def flush(self) -> None:
        """Add this process's pending counts to the shared counters.

        A count leaves ``pending`` only once the server has it, so a failed
        flush loses nothing and ``pending()`` never under-reports.
        """
        with self._flush_lock:
            with self._lock:
                todo = +self._pending
            for name, amount in todo.items():
                self._incr(self.prefix + name, amount)
                with self._lock:
                    self._pending[name] -= amount

    def _incr(self, key: str, amount: int) -> None:
        # add-then-incr: a missing counter is created at 0 first, and a counter
        # evicted between the two calls is created again (django-ratelimit PR #81).
        for _ in range(3):
            self._cache().add(key, 0, None)
            with contextlib.suppress(ValueError):
                total = self._cache().incr(key, amount)
                # pymemcache's HashClient answers False, not an error, while it deems a server dead.
                if type(total) is int:
                    return
                raise RuntimeError(f"counter {key!r}: the server did not count ({total!r})")
        raise RuntimeError(f"counter {key!r} kept disappearing")

    def pending(self) -> dict[str, int]:
        """This process's counts not yet added to the shared counters."""
        with self._lock:
            return dict(+self._pending)

    def snapshot(self) -> dict[str, int]:
        """Every counter summed across processes (this process's pending counts included)."""
        self.flush()
        stored = self._cache().get_many([self.prefix + name for name in NAMES])
        return {name: int(stored.get(self.prefix + name) or 0) for name in NAMES}

    def reset(self) -> None:
        with self._lock:
            self._pending.clear()
        self._cache().delete_many([self.prefix + name for name in NAMES])
