"""Counters of what the fence did, shared by every process through the wrapped cache.

A hit must stay one round trip, so nothing is written on the request path:
each process counts in memory and a daemon thread adds its counts to the
shared counters (atomic ``incr``) every ``STATS_INTERVAL`` seconds.

Each flush also adds the counts of ``HISTORY_NAMES`` to per-minute buckets,
``fence-stats:<alias>:m<minute>:<name>`` (``minute`` = unix time // 60 of the
flush), which expire after ``HISTORY_TTL``: ``history()`` reads the last hour
from them, summed across processes whether or not anyone was looking. A count
is filed under the minute of the flush that delivered it, so a flush that
failed and was retried later files its counts under that later minute.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from django.core.cache.backends.base import BaseCache

from .conf import fence_settings

logger = logging.getLogger(__name__)

NAMES = (
    "hits", "misses", "stale_served", "early_refreshes", "recomputes",
    "lock_waits", "wait_timeouts", "errors", "recompute_microseconds",
)  # fmt: skip
#: The counters also kept per minute, for ``history()``.
HISTORY_NAMES = ("hits", "stale_served", "misses", "recomputes")
#: The most minutes ``history()`` returns: the buckets keep one hour, older ones are gone.
HISTORY_MINUTES = 60
#: Seconds a minute's bucket lives: the hour, plus 5 minutes for the clocks of processes to disagree.
HISTORY_TTL = HISTORY_MINUTES * 60 + 300
# incr/add rounds before a counter that keeps disappearing (evicted as soon as created) fails the flush.
COUNT_ATTEMPTS = 5

_IN_HISTORY = frozenset(HISTORY_NAMES)


def check_minutes(minutes: object) -> int:
    """``minutes`` as an int from 1 to HISTORY_MINUTES, or ValueError naming the argument."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= HISTORY_MINUTES:
        raise ValueError(f"minutes must be an int from 1 to {HISTORY_MINUTES} (the history kept), got {minutes!r}.")
    return minutes


class Stats:
    """Counts for one FencedCache alias; ``snapshot()`` and ``history()`` sum every process's counts.

    ``clock`` (unix seconds) decides the minute a flush files its counts under;
    tests replace it to need no waits.
    """

    def __init__(self, cache: Callable[[], BaseCache], alias: str, clock: Callable[[], float] = time.time) -> None:
        self._cache = cache  # a getter: Django's caches are per thread, and the flusher has its own
        self.prefix = f"fence-stats:{alias}:"
        self.clock = clock
        self._pending: Counter[str] = Counter()  # not yet in the cumulative counters
        self._pending_minutes: Counter[str] = Counter()  # not yet in a minute's bucket (HISTORY_NAMES only)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher_pid: int | None = None

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._pending[name] += amount
            if name in _IN_HISTORY:
                self._pending_minutes[name] += amount
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

    def bucket_key(self, minute: int, name: str) -> str:
        """The key of ``name``'s counter for ``minute`` (unix time // 60), in the wrapped cache."""
        return f"{self.prefix}m{minute}:{name}"

    def flush(self) -> None:
        """Add this process's pending counts to the shared counters and to the current minute's buckets.

        A count leaves ``pending`` only once the server has it, so a failed
        flush loses nothing and ``pending()`` never under-reports. Each counter
        is delivered on its own: a flush that fails half-way has delivered the
        first half, and the next one delivers the rest once.
        """
        self._flush(self.clock())

    def _flush(self, now: float) -> None:
        minute = int(now // 60)
        with self._flush_lock:
            with self._lock:  # (pending counter, name, amount, key, timeout of a new counter)
                todo: list[tuple[Counter[str], str, int, str, int | None]] = [
                    (self._pending, name, amount, self.prefix + name, None)
                    for name, amount in self._pending.items() if amount > 0]
                todo += [(self._pending_minutes, name, amount, self.bucket_key(minute, name), HISTORY_TTL)
                         for name, amount in self._pending_minutes.items() if amount > 0]
            for pending, name, amount, key, timeout in todo:
                self._count(key, amount, timeout)
                with self._lock:
                    pending[name] -= amount

    def _count(self, key: str, amount: int, timeout: int | None) -> None:
        """Add ``amount`` to the counter ``key``; a missing one is created holding it, expiring after ``timeout``.

        incr first: once the counter exists (the steady state) that is the only
        call. Only a missing counter costs an ``add``; an add that loses to
        another process's, or whose winner is evicted before our next incr, goes
        round again (django-ratelimit PR #81 lost counts there). A count is only
        taken as delivered when the server said so: incr returned the new total,
        or add stored it. Django's RedisCache sends incr as EXISTS then INCRBY:
        two round trips, and a counter evicted between them comes back without
        its TTL (a bucket is only counted in during its own minute, so it cannot
        expire there).
        """
        cache = self._cache()
        for _ in range(COUNT_ATTEMPTS):
            try:
                total = cache.incr(key, amount)
            except ValueError:  # missing: BaseCache's contract (Django's memcached backends map NotFound to it)
                if cache.add(key, amount, timeout):
                    return
                continue  # another process created it first: count on top of theirs
            # pymemcache's HashClient answers False, not an error, while it deems a server dead (its add too,
            # which only sends us round again).
            if type(total) is not int:
                raise RuntimeError(f"counter {key!r}: the server did not count ({total!r})")
            return
        raise RuntimeError(f"counter {key!r} kept disappearing")

    def pending(self) -> dict[str, int]:
        """This process's counts not yet added to the shared counters."""
        with self._lock:
            return dict(+self._pending)

    def pending_minutes(self) -> dict[str, int]:
        """This process's counts of HISTORY_NAMES not yet added to a minute's bucket."""
        with self._lock:
            return dict(+self._pending_minutes)

    def snapshot(self) -> dict[str, int]:
        """Every counter summed across processes (this process's pending counts included)."""
        self.flush()
        stored = self._cache().get_many([self.prefix + name for name in NAMES])
        return {name: int(stored.get(self.prefix + name) or 0) for name in NAMES}

    def history(self, minutes: int = HISTORY_MINUTES) -> list[tuple[int, dict[str, int]]]:
        """The last ``minutes`` minutes (1 to HISTORY_MINUTES), oldest first, ending with the current one.

        Each entry is (the minute's start in unix seconds, {name: count} for
        HISTORY_NAMES), summed across processes, zeros where nothing was
        counted. This process's pending counts are flushed first (into the
        current minute); all the buckets are read with one ``get_many``.
        Server errors propagate, but pymemcache's HashClient answers
        ``get_many`` with nothing while it deems a server failed: zeros then,
        as ``snapshot()`` gives.
        """
        check_minutes(minutes)
        now = self.clock()
        self._flush(now)
        current = int(now // 60)
        span = range(current - minutes + 1, current + 1)
        stored = self._cache().get_many([self.bucket_key(minute, name) for minute in span for name in HISTORY_NAMES])
        return [(minute * 60, {name: int(stored.get(self.bucket_key(minute, name)) or 0) for name in HISTORY_NAMES})
                for minute in span]

    def reset(self) -> None:
        """Forget every count: this process's pending ones, the shared counters and every bucket still alive.

        It waits for a flush in progress: one that finished after the reset would subtract what
        it delivered from the cleared pending counts, and later counts would go missing.
        """
        with self._flush_lock:
            with self._lock:
                self._pending.clear()
                self._pending_minutes.clear()
            current = int(self.clock() // 60)
            alive = range(current - HISTORY_TTL // 60 - 1, current + 1)
            self._cache().delete_many([self.prefix + name for name in NAMES] + [
                self.bucket_key(minute, name) for minute in alive for name in HISTORY_NAMES])
