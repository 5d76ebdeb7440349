"""Counts of how often each expensive part of the demo ran, shared by every process.

The counts live in the backing cache, not the fenced one: every process that
shares the backing server sees the same numbers, and mark_stale/delete on the
fence leave them alone. With the embedded LocMemCache they count one process.
"""

from django.core.cache import caches

PREFIX = "demo:runs:"


def count_run(name: str) -> int:
    """Add one to the counter `name` and return the new total."""
    backing = caches["backing"]
    key = PREFIX + name
    # add() creates the key only if missing, so concurrent first callers do not
    # reset each other's increments; incr() is atomic on Redis and memcached.
    backing.add(key, 0, timeout=None)
    try:
        return backing.incr(key)
    except ValueError:  # evicted between add() and incr()
        backing.add(key, 1, timeout=None)
        return 1


def total_runs(name: str) -> int:
    """How many times the part `name` has run, across processes sharing the backing cache."""
    return int(caches["backing"].get(PREFIX + name, 0))
