"""The per-minute history of a FencedCache alias's counters: buckets, flushes, reads, and metrics.history()."""

from __future__ import annotations

import asyncio
import socket
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from django_fence import metrics
from django_fence.stats import HISTORY_MINUTES, HISTORY_NAMES, HISTORY_TTL, NAMES, Stats
from tests import servers
from tests.conftest import backing_config, fenced_caches
from tests.workers import setup_django, spawn_together

pytestmark = pytest.mark.timeout(60)

MINUTE = 28_333_333  # 2023-11-14 22:13 UTC, as unix time // 60
START = MINUTE * 60 + 15.0  # 15 s into that minute
ZEROS = dict.fromkeys(HISTORY_NAMES, 0)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def install_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Give the "default" alias's stats a stopped clock at START, and forget every count."""
    clock = Clock(START)
    monkeypatch.setattr(caches["default"]._stats(), "clock", clock)
    caches["default"].reset_stats()
    return clock


@pytest.fixture
def clock(fenced_on: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Clock:
    return install_clock(monkeypatch)


def stats() -> Stats:
    return caches["default"]._stats()  # type: ignore[no-any-return]


def counts(**named: int) -> dict[str, int]:
    return {**ZEROS, **named}


def record_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """The keys the wrapped cache's ``method`` is called with, from now on (every thread)."""
    cls = type(caches["backing"])
    original = getattr(cls, method)
    keys: list[str] = []

    def spy(self: Any, key: Any, *args: Any, **kwargs: Any) -> Any:
        keys.append(key)
        return original(self, key, *args, **kwargs)

    monkeypatch.setattr(cls, method, spy)
    return keys


# -- minutes ---------------------------------------------------------------------------------------


def test_history_files_counts_under_the_minute_of_their_flush(clock: Clock) -> None:
    fenced = caches["default"]
    fenced.get_or_set("a", "value", 60)  # a miss and its recompute
    fenced.get_or_set("a", "value", 60)  # a hit
    stats().flush()
    clock.now += 120  # two minutes later
    fenced.get_or_set("b", "value", 60)
    stats().add("stale_served", 2)
    stats().flush()
    assert fenced.stats_history(4) == [
        ((MINUTE - 1) * 60, ZEROS),
        (MINUTE * 60, counts(hits=1, misses=1, recomputes=1)),
        ((MINUTE + 1) * 60, ZEROS),
        ((MINUTE + 2) * 60, counts(misses=1, recomputes=1, stale_served=2)),
    ]
    totals = fenced.stats()
    assert {name: totals[name] for name in HISTORY_NAMES} == counts(hits=1, misses=2, recomputes=2, stale_served=2)


def test_history_flushes_this_process_pending_counts_into_the_current_minute(clock: Clock) -> None:
    stats().add("hits", 3)
    clock.now = MINUTE * 60 + 59.9  # the last moment of the minute is still that minute
    assert stats().history(1) == [(MINUTE * 60, counts(hits=3))]
    assert stats().pending_minutes() == {}
    assert stats().pending() == {}


def test_history_is_oldest_first_one_entry_per_minute_ending_now_zero_filled(clock: Clock) -> None:
    clock.now = START - 59 * 60  # the oldest minute of the hour
    stats().add("misses")
    stats().flush()
    clock.now = START
    history = caches["default"].stats_history()
    assert len(history) == HISTORY_MINUTES == 60
    assert [start for start, _ in history] == [(MINUTE - 59 + i) * 60 for i in range(60)]
    assert history[0] == ((MINUTE - 59) * 60, counts(misses=1))
    assert all(minute_counts == ZEROS for _, minute_counts in history[1:])
    assert caches["default"].stats_history(1) == [(MINUTE * 60, ZEROS)]


def test_history_reads_every_bucket_with_one_get_many(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    stats().add("hits")
    stats().flush()
    get_many = record_calls(monkeypatch, "get_many")
    assert caches["default"].stats_history(60)[-1] == (MINUTE * 60, counts(hits=1))
    assert len(get_many) == 1
    assert len(get_many[0]) == 60 * len(HISTORY_NAMES)


def test_astats_history_matches_stats_history(clock: Clock) -> None:
    stats().add("recomputes", 2)
    fenced = caches["default"]
    assert asyncio.run(fenced.astats_history(3)) == fenced.stats_history(3) == [
        ((MINUTE - 2) * 60, ZEROS), ((MINUTE - 1) * 60, ZEROS), (MINUTE * 60, counts(recomputes=2))]


@pytest.mark.parametrize("minutes", [0, -1, HISTORY_MINUTES + 1, 60 * 24, 1.0, "5", None, True])
def test_history_refuses_a_bad_minutes_argument(minutes: Any) -> None:
    fenced = caches["default"]
    message = rf"minutes must be an int from 1 to {HISTORY_MINUTES} \(the history kept\), got {minutes!r}\."
    with pytest.raises(ValueError, match=message):
        fenced.stats_history(minutes)
    with pytest.raises(ValueError, match=message):
        asyncio.run(fenced.astats_history(minutes))
    with pytest.raises(ValueError, match=message):
        metrics.history(minutes)


# -- what a flush writes -------------------------------------------------------------------------


def test_flush_adds_only_missing_counters_and_then_only_increments(clock: Clock,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    adds, incrs = record_calls(monkeypatch, "add"), record_calls(monkeypatch, "incr")
    keys = [f"fence-stats:default:{name}" for name in ("hits", "misses", "errors")]
    keys += [f"fence-stats:default:m{MINUTE}:{name}" for name in ("hits", "misses")]
    for _ in range(2):  # one add per name: whoever flushes (this thread or the flusher), each counter moves once
        stats().add("hits", 2)
        stats().add("misses")
        stats().add("errors")
        stats().flush()
    assert sorted(adds) == sorted(keys)  # created by the first flush, holding its counts
    assert sorted(incrs) == sorted(keys * 2)  # incr first, every time: missing the first time only
    assert stats().history(1) == [(MINUTE * 60, counts(hits=4, misses=2))]
    assert caches["default"].stats()["errors"] == 2


def test_a_counter_whose_creator_is_evicted_before_our_incr_is_created_again(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's add won, and its counter was evicted before our incr: no count is lost or doubled."""
    cls = type(caches["backing"])
    original = cls.add
    lost: list[str] = []

    def add(self: Any, key: Any, *args: Any, **kwargs: Any) -> bool:
        if key not in lost:
            lost.append(key)
            return False
        return bool(original(self, key, *args, **kwargs))

    monkeypatch.setattr(cls, "add", add)
    stats().add("hits", 5)
    stats().flush()
    assert sorted(lost) == ["fence-stats:default:hits", f"fence-stats:default:m{MINUTE}:hits"]
    assert stats().history(1) == [(MINUTE * 60, counts(hits=5))]
    assert caches["default"].stats()["hits"] == 5


def test_a_counter_that_keeps_disappearing_fails_the_flush_and_stays_pending(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(caches["backing"]), "add", lambda self, *args, **kwargs: False)
    stats().add("misses", 2)
    with pytest.raises(RuntimeError, match="kept disappearing"):
        stats().flush()
    assert stats().pending() == {"misses": 2}
    assert stats().pending_minutes() == {"misses": 2}


def test_a_flush_failing_half_way_delivers_the_rest_once_later(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = type(caches["backing"])
    original = cls.incr
    failing = f"fence-stats:default:m{MINUTE}:misses"
    down = [True]

    def incr(self: Any, key: Any, *args: Any, **kwargs: Any) -> int:
        if down and key == failing:
            raise ConnectionError("server went away")
        return int(original(self, key, *args, **kwargs))

    monkeypatch.setattr(cls, "incr", incr)
    stats().add("hits", 2)
    stats().add("misses")
    with pytest.raises(ConnectionError):
        stats().flush()
    assert stats().pending() == {}  # the totals and the hits bucket were delivered
    assert stats().pending_minutes() == {"misses": 1}
    down.clear()
    clock.now += 60  # the retry files the count under its own minute
    stats().flush()
    assert stats().pending_minutes() == {}
    assert stats().history(2) == [(MINUTE * 60, counts(hits=2)), ((MINUTE + 1) * 60, counts(misses=1))]
    totals = caches["default"].stats()
    assert (totals["hits"], totals["misses"]) == (2, 1)


@pytest.fixture(params=["redis", "pylibmc", "pymemcache"])
def own_server(request: pytest.FixtureRequest, settings: Any) -> Iterator[tuple[str, servers.Server]]:
    """A server of this test's own, which the test stops; "default" is a FencedCache over it."""
    kind = request.param
    server = servers.start_redis() if kind == "redis" else servers.start_memcached()
    settings.CACHES = fenced_caches(backing_config(kind, server.url, timeout=0.5), BETA=0.0)
    yield kind, server
    server.stop()


def test_a_flush_while_the_server_is_stopped_keeps_the_counts_for_a_later_flush(
        own_server: tuple[str, servers.Server], monkeypatch: pytest.MonkeyPatch) -> None:
    kind, server = own_server
    clock = install_clock(monkeypatch)
    caches["default"].set("warm", 1)  # connected before the server goes away
    server.stop()
    stats().add("hits", 3)
    stats().add("misses")
    errors = []
    for _ in range(3):
        with pytest.raises(Exception) as failed:
            stats().flush()
        errors.append(failed.value)
        assert stats().pending() == {"hits": 3, "misses": 1}
        assert stats().pending_minutes() == {"hits": 3, "misses": 1}
    if kind == "pymemcache":  # HashClient answers False to incr while it retries a failed server
        assert any(isinstance(e, RuntimeError) and "did not count (False)" in str(e) for e in errors), errors
    clock.now += 60
    server.start()  # empty: memcached and this redis keep nothing
    expected = [(MINUTE * 60, ZEROS), ((MINUTE + 1) * 60, counts(hits=3, misses=1))]
    deadline, seen = time.monotonic() + 10, None
    while seen != expected:  # clients reconnect on their own schedule (retry_timeout, dead_timeout), and
        try:  # pymemcache's get_many answers {} until then: wait until the counts are read back
            stats().flush()  # by this thread, or by the flusher thread meanwhile
            seen = stats().history(2)
        except Exception as exc:
            seen = exc
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert stats().pending_minutes() == {}
    totals = caches["default"].stats()
    assert (totals["hits"], totals["misses"]) == (3, 1)


# -- expiry and reset ------------------------------------------------------------------------------


def server_ttl(kind: str, location: str, key: str) -> float | None:
    """Seconds ``key`` (as the wrapped cache names it) has left on the server; None if it never expires."""
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(location)
        try:
            ttl = client.ttl(key)
        finally:
            client.close()
        assert ttl != -2, f"{key} is missing"
        return None if ttl == -1 else float(ttl)
    if kind == "pylibmc":
        host, port = location.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(f"mg {key} t\r\n".encode())  # memcached's meta get: t = the TTL left
            answer = connection.recv(100).decode()
        assert answer.startswith("HD t"), f"{key}: {answer!r}"
        ttl = int(answer.split()[1][1:])
        return None if ttl == -1 else float(ttl)
    expires = caches["backing"]._expire_info[key]  # LocMem: the expiry time, or None
    return None if expires is None else expires - time.time()


def test_buckets_expire_after_history_ttl_and_the_totals_never(clock: Clock, fenced_on: dict[str, Any]) -> None:
    assert HISTORY_TTL > (HISTORY_MINUTES + 1) * 60  # a bucket outlives the hour it is shown in
    stats().add("hits")
    stats().add("errors")
    stats().flush()
    stats().add("hits")
    stats().flush()  # an incr keeps the TTL its add set
    backing = fenced_on["backing"]
    kind = "redis" if "redis" in backing["BACKEND"] else "pylibmc" if "memcached" in backing["BACKEND"] else "locmem"
    bucket = caches["backing"].make_key(f"fence-stats:default:m{MINUTE}:hits")
    ttl = server_ttl(kind, backing["LOCATION"], bucket)
    assert ttl is not None and HISTORY_TTL - 5 <= ttl <= HISTORY_TTL
    for name in ("hits", "errors"):
        assert server_ttl(kind, backing["LOCATION"], caches["backing"].make_key(f"fence-stats:default:{name}")) is None


def test_reset_forgets_the_buckets_of_the_last_hour_and_the_pending_counts(clock: Clock) -> None:
    for minutes_ago in (59, 30, 0):
        clock.now = START - minutes_ago * 60
        stats().add("hits")
        stats().flush()
    stats().add("misses")  # pending
    history = caches["default"].stats_history()
    assert [history[i][1] for i in (0, 29, 59)] == [counts(hits=1), counts(hits=1), counts(hits=1, misses=1)]
    caches["default"].reset_stats()
    assert stats().pending_minutes() == {}
    assert caches["default"].stats_history() == [((MINUTE - 59 + i) * 60, ZEROS) for i in range(60)]
    assert caches["default"].stats() == dict.fromkeys(NAMES, 0)


# -- across processes ------------------------------------------------------------------------------


def count_in_child(caches_json: str, key: str, now: float, barrier: Any, queue: Any, kwargs: dict[str, Any]) -> None:
    """In a spawned process: a miss, its recompute and a hit on ``key`` at ``now``, flushed."""
    try:
        setup_django(caches_json)
        fenced = caches["default"]
        fenced._stats().clock = lambda: now
        barrier.wait()
        fenced.get_or_set(key, "value", 60)
        fenced.get_or_set(key, "value", 60)
        fenced._stats().flush()
        queue.put({"pending": fenced._stats().pending_minutes()})
    except BaseException:
        queue.put({"crash": traceback.format_exc()})


@pytest.mark.parametrize("fenced_on", ["redis", "pylibmc"], indirect=True)
def test_two_processes_counts_sum_in_the_same_bucket(clock: Clock, fenced_on: dict[str, Any]) -> None:
    import json

    caches_json = json.dumps(fenced_on)
    reports = spawn_together([(count_in_child, (caches_json, f"key-{i}", START)) for i in range(2)])
    assert [report["pending"] for report in reports] == [{}, {}]
    stats().add("stale_served")  # this process's own count, flushed by history()
    assert caches["default"].stats_history(2) == [
        ((MINUTE - 1) * 60, ZEROS), (MINUTE * 60, counts(hits=2, misses=2, recomputes=2, stale_served=1))]


# -- metrics.history() -----------------------------------------------------------------------------


def test_metrics_history_gives_points_with_their_hit_ratio(clock: Clock) -> None:
    stats().add("hits", 3)
    stats().add("stale_served")
    stats().add("misses")
    stats().add("recomputes")
    assert metrics.history(2) == {"default": {"points": [
        {"minute": (MINUTE - 1) * 60, "hits": 0, "stale_served": 0, "misses": 0, "recomputes": 0, "hit_ratio": None},
        {"minute": MINUTE * 60, "hits": 3, "stale_served": 1, "misses": 1, "recomputes": 1, "hit_ratio": 0.8},
    ]}}


def test_hit_ratio_counts_stale_reads_as_served() -> None:
    assert metrics.hit_ratio({"hits": 0, "stale_served": 0, "misses": 0}) is None
    assert metrics.hit_ratio({"hits": 1, "stale_served": 1, "misses": 2}) == 0.5
    assert metrics.hit_ratio({"hits": 0, "stale_served": 0, "misses": 3}) == 0.0


def test_metrics_history_reports_a_server_that_is_down_as_an_error(settings: Any) -> None:
    settings.CACHES = {**fenced_caches(backing_config("redis", "redis://127.0.0.1:1/0", timeout=0.5)),
                       "up": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "plain"},
                       "plain": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "up"}}
    history = metrics.history(1)
    assert set(history) == {"default", "up"}
    assert list(history["default"]) == ["error"]
    assert history["default"]["error"].startswith("ConnectionError: ")
    assert [point["hits"] for point in history["up"]["points"]] == [0]
    with pytest.raises(ValueError, match="minutes"):  # a bad argument is the caller's error, not an entry
        metrics.history(0)


def test_a_reset_waits_for_a_flush_in_progress_and_later_counts_are_kept(settings: Any) -> None:
    import threading

    from django.core.cache.backends.locmem import LocMemCache

    class SlowCache(LocMemCache):
        """A LocMem cache whose first incr waits until the test lets it go."""

        entered, release = threading.Event(), threading.Event()

        def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
            if not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(10)
            return super().incr(key, delta, version)

    cache = SlowCache("reset-race", {})
    stats = Stats(lambda: cache, "race")
    cache.set(stats.prefix + "hits", 0)
    stats.add("hits", 5)
    flushing = threading.Thread(target=stats.flush)
    flushing.start()
    assert SlowCache.entered.wait(10)
    resetting = threading.Thread(target=stats.reset)
    resetting.start()
    resetting.join(0.5)  # a reset that does not wait would be done by now
    SlowCache.release.set()
    flushing.join(10)
    resetting.join(10)
    for _ in range(3):
        stats.add("hits")
    assert stats.pending() == {"hits": 3}
    assert stats.snapshot()["hits"] == 3
