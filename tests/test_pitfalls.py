"""Where the peers broke (../shared/PITFALLS.md), one test each, against real servers."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import pytest
from django.core.cache import caches

from django_fence.locks import LOCK_SUFFIX, RedisLock, _listener_for
from django_fence.store import GENERATION_SUFFIX
from tests.conftest import backing_config, fenced_caches, flush
from tests.test_stampede import SERVER_BACKINGS, Counter, in_threads
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(90)


# 5. Lost or extra wake-ups -------------------------------------------------------------------------


def _finish_leader_during_acquire(fenced: Any, key: str, value: Any, evict: bool = False) -> None:
    """Make the caller's next failed lock attempt coincide with the leader finishing."""
    fence = fenced._fence()
    fenced_key = fenced._key(key)
    lock = fence.lock
    assert lock.acquire(fenced_key, "leader", 30, time.time() + 0.05)
    original = lock.acquire

    def acquire(k: Any, token: str, ttl: float, expected_end: float) -> bool:
        taken = original(k, token, ttl, expected_end)
        if not taken and k == fenced_key:
            lock.acquire = original  # the leader finishes once, right now
            if not evict:
                fenced.set(key, value)
            lock.release(fenced_key, "leader")
        return bool(taken)

    lock.acquire = acquire


def test_waiter_registering_as_the_leader_finishes_is_woken(fenced: Any, settings: Any) -> None:
    _finish_leader_during_acquire(fenced, "race", "landed")
    began = time.monotonic()
    assert fenced.get_or_set("race", lambda: "recomputed", 60) == "landed"
    assert time.monotonic() - began < 1.0  # not the wait deadline (5 s) nor a quarter lease (7.5 s)


def test_value_evicted_right_after_it_landed_is_recomputed_not_none(fenced: Any) -> None:
    _finish_leader_during_acquire(fenced, "evicted", "landed", evict=True)
    began = time.monotonic()
    assert fenced.get_or_set("evicted", lambda: "recomputed", 60) == "recomputed"
    assert time.monotonic() - began < 1.5


@pytest.mark.parametrize("backing", ["redis", "django_redis"], indirect=True)
def test_timed_out_waiter_leaves_no_signal_behind(fenced: Any, settings: Any) -> None:
    settings.CACHES["default"]["OPTIONS"].update({"WAIT_TIMEOUT": 0.3})
    settings.CACHES = dict(settings.CACHES)
    fenced = caches["default"]
    fence = fenced._fence()
    key = fenced._key("signal")
    assert isinstance(fence.lock, RedisLock)
    assert fence.lock.acquire(key, "leader", 30, 0)
    assert fenced.get_or_set("signal", lambda: "took over", 60) == "took over"
    assert _listener_for(fence.lock.client).watches == {}
    fenced.delete("signal")
    # A late wake-up for the first round must not release the next round's waiter without a value.
    fence.lock.release(key, "nobody")
    began = time.monotonic()
    assert fenced.get_or_set("signal", lambda: "second", 60) == "second"
    assert time.monotonic() - began >= 0.3  # it waited for the real leader until its deadline
    assert fence.lock.release(key, "leader")


# 6. Pool smaller than the number of threads --------------------------------------------------------


def test_small_blocking_pool_does_not_deadlock(redis_url: str, settings: Any) -> None:
    flush("redis", redis_url)
    backing = backing_config("django_redis", redis_url)
    backing["OPTIONS"].update({"CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
                               "CONNECTION_POOL_KWARGS": {"max_connections": 3, "timeout": 20}})
    settings.CACHES = fenced_caches(backing)
    compute = Counter(0.3)
    results, errors, _ = in_threads(30, lambda: caches["default"].get_or_set("pool", compute, 60))
    assert errors == [] and compute.calls == 1 and len(results) == 30


# 7. None or someone else's value ---------------------------------------------------------------------


def test_dummy_cache_still_gives_the_callables_value(settings: Any) -> None:
    settings.CACHES = fenced_caches({"BACKEND": "django.core.cache.backends.dummy.DummyCache"})
    assert caches["default"].get_or_set("k", lambda: "value", 60) == "value"
    assert caches["default"].get_or_set("k", lambda: None, 60) is None


# 9. Clocks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backing", ["redis", "pymemcache"], indirect=True)
def test_clock_offsets_between_processes_do_not_cause_a_stampede(fenced_config: Any) -> None:
    """django-redis HerdClient, django-cachalot #224: clocks differ between machines."""
    results = run_in_processes(3, "steady_traffic", fenced_config, key="skewed", threads=3, seconds=4.0, ttl=1,
                               compute_seconds=0.1, skews=(-2.0, 0.0, 2.0))
    computed = sorted(tuple(span) for r in results for span in r["computed"])
    assert [(a, b) for a, b in itertools.pairwise(computed) if b[0] < a[1]] == []  # never two at once
    assert 3 <= len(computed) <= 14, computed


def test_a_slow_clock_is_not_served_a_value_past_its_grace(fenced: Any, settings: Any) -> None:
    """The hard expiry (timeout + GRACE) is the server's, so no client clock can stretch it."""
    settings.CACHES["default"]["OPTIONS"]["GRACE"] = 1
    settings.CACHES = dict(settings.CACHES)
    fenced = caches["default"]
    assert fenced.get_or_set("graced", lambda: "old", 1) == "old"
    time.sleep(2.5)  # timeout + grace, by the server's clock
    fenced._fence().clock = lambda: time.time() - 2.0
    assert fenced.get_or_set("graced", lambda: "new", 1) == "new"


# 10. The envelope must not break plain operations ----------------------------------------------------


def test_incr_keeps_the_ttl(fenced: Any) -> None:
    fenced.set("n", 1, 2)
    assert fenced.incr("n", 5) == 6
    assert fenced.decr("n") == 5
    time.sleep(3.1)
    assert fenced.get("n") is None


# 15. XFetch alone is not single-flight ---------------------------------------------------------------


@pytest.mark.parametrize("backing", ["redis", "pylibmc"], indirect=True)
def test_one_recompute_per_refresh_cycle_under_steady_traffic(fenced_config: Any) -> None:
    results = run_in_processes(3, "steady_traffic", fenced_config, key="steady", threads=4, seconds=4.0,
                               ttl=1, compute_seconds=0.1)
    computed = sorted(tuple(span) for r in results for span in r["computed"])
    # Every refresh goes through the lock: no two recomputes ever overlap, across processes ...
    overlaps = [(a, b) for a, b in itertools.pairwise(computed) if b[0] < a[1]]
    assert overlaps == []
    # (under heavy reads XFetch refreshes about delta * ln(reads per delta) early, so cycles are < ttl).
    assert 3 <= len(computed) <= 12, computed
    # ... and nobody waits but the 12 first callers and each cycle's one refresher.
    waits = [s for r in results for s in r["slow"]]
    assert len(waits) <= 12 + len(computed), waits


# 16. Lock and signal keys must not leak --------------------------------------------------------------


@pytest.mark.parametrize("backing", ["redis", "django_redis"], indirect=True)
def test_no_lock_key_outlives_its_recompute(fenced: Any, redis_url: str) -> None:
    import redis

    for index in range(50):
        fenced.get_or_set(f"leak-{index}", lambda i=index: i, 60)
        fenced.delete(f"leak-{index}")
    client = redis.Redis.from_url(redis_url)
    assert client.keys(f"*{LOCK_SUFFIX}*") == []
    generations = client.keys(f"*{GENERATION_SUFFIX}*")
    assert len(generations) == 50
    assert all(0 < client.ttl(key) <= 24 * 3600 for key in generations)
    client.close()


@pytest.mark.parametrize("backing", ["pylibmc", "pymemcache"], indirect=True)
def test_memcached_lock_tombstones_expire(fenced: Any) -> None:
    keys = [f"leak-{uuid.uuid4().hex}" for _ in range(20)]
    for key in keys:
        fenced.get_or_set(key, lambda: 1, 60)
    lock = fenced._fence().lock
    time.sleep(2.1)  # a released lock is a one-second tombstone
    assert all(lock._read_lock(fenced._key(key)) is None for key in keys)


# 11. Derived keys must fit memcached's 250 bytes --------------------------------------------------


@pytest.mark.parametrize("backing", ["pylibmc", "pymemcache"], indirect=True)
@pytest.mark.parametrize("length", range(236, 251, 2))
def test_derived_keys_fit_memcached(fenced: Any, length: int) -> None:
    key = "x" * length
    compute = Counter(0.2)
    _results, errors, _ = in_threads(5, lambda: fenced.get_or_set(key, compute, 60))
    assert errors == [] and compute.calls == 1
    fenced.delete(key)
    fenced.mark_stale(key)


@pytest.mark.parametrize("backing", SERVER_BACKINGS, indirect=True)
def test_unknown_lock_owner_cannot_release(fenced: Any) -> None:
    lock = fenced._fence().lock
    key = fenced._key("owned")
    assert lock.acquire(key, "owner", 5, time.time())
    assert lock.release(key, "intruder") is False
    assert lock.acquire(key, "intruder", 5, time.time()) is False
    assert lock.release(key, "owner") is True


# Replicas: what the leader wrote is read back from the primary ------------------------------------


@pytest.mark.parametrize("kind", ["redis", "django_redis"])
def test_waiters_read_the_primary_when_replicas_lag(kind: str) -> None:
    """A replica that never catches up: reads around the lock must not miss the leader's value."""
    from tests import servers
    from tests.workers import run_in_processes as run

    primary, lagging = servers.start_redis(), servers.start_redis()  # the "replica" never replicates
    try:
        backing = backing_config(kind, primary.url)
        backing["LOCATION"] = [primary.url, lagging.url]  # writes go to the first, reads to the others
        results = run(3, "hit_cold_key", fenced_caches(backing), key="replicated", threads=5, compute_seconds=0.3)
        assert [r["errors"] for r in results] == [[]] * 3
        assert sum(r["recomputes"] for r in results) == 1
    finally:
        primary.stop()
        lagging.stop()
