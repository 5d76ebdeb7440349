"""The fence's guarantees: one recompute, no lost waiters, early refresh, stale serving, invalidation."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches

from django_fence.engine import Envelope, FenceReentryError
from django_fence.store import Key
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(120)

SERVER_BACKINGS = ["redis", "django_redis", "pylibmc", "pymemcache"]


def in_threads(count: int, function: Callable[[], Any]) -> tuple[list[Any], list[BaseException], list[float]]:
    """Run ``function`` in ``count`` threads released together; (results, errors, latencies)."""
    results: list[Any] = []
    errors: list[BaseException] = []
    latencies: list[float] = []
    start = threading.Barrier(count)

    def run() -> None:
        start.wait()
        began = time.monotonic()
        try:
            results.append(function())
        except BaseException as exc:
            errors.append(exc)
        latencies.append(time.monotonic() - began)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors, latencies


class Counter:
    """A callable that counts its calls and takes ``seconds`` each time."""

    def __init__(self, seconds: float = 0.0, value: Any = None) -> None:
        self.calls = 0
        self.seconds = seconds
        self.value = value
        self.lock = threading.Lock()

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
            call = self.calls
        time.sleep(self.seconds)
        return self.value if self.value is not None else f"value-{call}"


def store_envelope(cache: Any, key: str, value: Any, soft_in: float, delta: float, hard: float = 300) -> None:
    now = time.time()
    caches["backing"].set(key, Envelope(value, now + soft_in, delta, now), hard)


@contextlib.contextmanager
def refresh_in_progress(fenced: Any, key: str) -> Iterator[None]:
    """``key`` holds a stale "old"; inside the block, a refresh of it is computing (to "recomputed")."""
    store_envelope(fenced, key, "old", soft_in=-1, delta=0.1)
    started, finish = threading.Event(), threading.Event()

    def compute() -> str:
        started.set()
        finish.wait(10)
        return "recomputed"

    worker = threading.Thread(target=lambda: fenced.get_or_set(key, compute, 60))
    worker.start()
    assert started.wait(10)
    try:
        yield
    finally:
        finish.set()
        worker.join(10)


# -- one recompute -----------------------------------------------------------------------------------


def test_get_or_set_recomputes_once_when_many_threads_miss(fenced: Any) -> None:
    compute = Counter(0.2)
    results, errors, _ = in_threads(50, lambda: fenced.get_or_set("hot", compute, 60))
    assert errors == []
    assert compute.calls == 1
    assert results == ["value-1"] * 50


@pytest.mark.parametrize("backing", SERVER_BACKINGS, indirect=True)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_get_or_set_recomputes_once_when_many_processes_miss(fenced_config: Any, use_async: bool) -> None:
    results = run_in_processes(4, "hit_cold_key", fenced_config, key="cold", threads=25, compute_seconds=0.2,
                               use_async=use_async)
    assert [r["errors"] for r in results] == [[]] * 4
    assert sum(r["recomputes"] for r in results) == 1
    values = {v for r in results for v in r["values"]}
    assert len(values) == 1 and len([v for r in results for v in r["values"]]) == 100


def test_sync_and_async_callers_of_one_key_share_one_computation(fenced: Any) -> None:
    compute = Counter(0.3)

    async def many() -> list[Any]:
        return await asyncio.gather(*[fenced.aget_or_set("shared", compute, 60) for _ in range(20)])

    sync_results: list[Any] = []
    thread = threading.Thread(target=lambda: sync_results.append(fenced.get_or_set("shared", compute, 60)))
    thread.start()
    time.sleep(0.05)
    async_results = asyncio.run(many())
    thread.join()
    assert compute.calls == 1
    assert set(async_results) | set(sync_results) == {"value-1"}


def test_aget_or_set_does_not_block_the_event_loop(fenced: Any) -> None:
    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.gather(*[fenced.aget_or_set("slow", Counter(0.5), 60) for _ in range(10)])
        task.cancel()
        return ticks

    assert asyncio.run(scenario()) >= 20  # the loop kept ticking while the value was computed


# -- waiters ---------------------------------------------------------------------------------------


def _server_commands(kind: str, location: str) -> int:
    if kind in ("redis", "django_redis"):
        import redis

        client = redis.Redis.from_url(location)
        try:
            return int(client.info("stats")["total_commands_processed"])
        finally:
            client.close()
    from pymemcache.client.base import Client

    host, port = location.split(":")
    client = Client((host, int(port)))
    try:
        stats = client.stats()
        return sum(int(stats.get(name, 0)) for name in (b"cmd_get", b"cmd_set", b"cmd_touch", b"cmd_flush"))
    finally:
        client.close()


@pytest.mark.parametrize("backing", SERVER_BACKINGS, indirect=True)
def test_waiters_commands_do_not_grow_with_the_recompute_time(fenced_config: Any, backing: tuple[str, str]) -> None:
    """cashews #333: waiters must not poll the server all through a long recompute."""
    commands = {}
    for seconds in (0.5, 2.0):
        before = _server_commands(*backing)
        results = run_in_processes(3, "hit_cold_key", fenced_config, key=f"slow-{seconds}", threads=1,
                                   compute_seconds=seconds)
        commands[seconds] = _server_commands(*backing) - before
        assert sum(r["recomputes"] for r in results) == 1
    # Four times the wait costs a few more checks per waiting process, not four times as many
    # (polling every 5 ms would cost 300 more per process).
    assert commands[2.0] < commands[0.5] * 2, commands
    assert commands[0.5] / 3 < 60, commands  # memcached counts each key of a multi-get


@pytest.mark.parametrize("backing", SERVER_BACKINGS, indirect=True)
def test_waiters_return_milliseconds_after_the_value_lands(fenced_config: Any) -> None:
    """nginx re-checks every 500 ms, redis-py's lock sleeps 100 ms: ours are woken or due."""
    fenced_config["default"]["OPTIONS"]["GRACE"] = 0
    results = run_in_processes(3, "storm_twice", fenced_config, key="lands", threads=5, compute_seconds=0.5)
    assert sum(r["recomputes"] for r in results) == 1
    after_landing = sorted(returned - value for r in results for returned, value in zip(r["returned"], r["values"],
                                                                                        strict=True))
    assert len(after_landing) == 15
    assert after_landing[len(after_landing) // 2] < 0.02, after_landing  # the median caller: a few ms
    assert after_landing[-1] < 0.25, after_landing


def test_waiter_takes_over_at_wait_timeout(fenced: Any, settings: Any) -> None:
    settings.CACHES["default"]["OPTIONS"].update({"WAIT_TIMEOUT": 0.5, "LOCK_TIMEOUT": 30})
    settings.CACHES = dict(settings.CACHES)
    fenced = caches["default"]
    fence = fenced._fence()
    key = fenced._key("held")
    assert fence.lock.acquire(key, "someone-else", 30, time.time() + 60)
    began = time.monotonic()
    assert fenced.get_or_set("held", lambda: "mine", 60) == "mine"
    assert 0.5 <= time.monotonic() - began < 2.0
    assert fence.lock.release(key, "someone-else")


# -- locks -------------------------------------------------------------------------------------------


def test_lock_release_is_compare_and_delete(fenced: Any) -> None:
    lock = fenced._fence().lock
    key = Key(f"lock-{uuid.uuid4().hex}")
    assert lock.acquire(key, "a", 1, time.time())
    assert not lock.acquire(key, "b", 1, time.time())
    assert lock.release(key, "b") is False  # not the owner: a no-op
    assert not lock.acquire(key, "c", 1, time.time())
    time.sleep(2.1)  # the lease of "a" runs out; "b" takes it over
    assert lock.acquire(key, "b", 5, time.time())
    assert lock.release(key, "a") is False  # the late owner deletes nothing
    assert not lock.acquire(key, "c", 5, time.time())
    assert lock.release(key, "b") is True
    assert lock.acquire(key, "c", 5, time.time())
    assert lock.release(key, "c") is True


@pytest.mark.parametrize("backing", SERVER_BACKINGS, indirect=True)
@pytest.mark.parametrize(("lock_timeout", "wait_timeout"), [(2, 10), (30, 1)], ids=["lease-expires", "wait-ends"])
def test_crashed_leader_is_taken_over(fenced_config: Any, tmp_path: Any, lock_timeout: float,
                                      wait_timeout: float) -> None:
    """dogpile.cache #261: a leader SIGKILLed mid-recompute must not leave its lock forever."""
    import json
    import os
    import signal

    from tests.workers import CONTEXT, _child

    fenced_config["default"]["OPTIONS"].update({"LOCK_TIMEOUT": lock_timeout, "WAIT_TIMEOUT": wait_timeout})
    marker = tmp_path / "started"
    queue, barrier = CONTEXT.Queue(), CONTEXT.Barrier(1)  # kept referenced until the child has them
    arguments = {"key": "crash", "started_path": str(marker)}
    leader = CONTEXT.Process(target=_child, args=("hold_lock_forever", json.dumps(fenced_config), barrier, queue,
                                                  arguments))
    leader.start()
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline and leader.is_alive()
        time.sleep(0.01)
    os.kill(leader.pid or 0, signal.SIGKILL)
    leader.join()
    killed_at = time.monotonic()
    results = run_in_processes(2, "hit_cold_key", fenced_config, key="crash", threads=5, compute_seconds=0.1)
    assert sum(r["recomputes"] for r in results) == 1  # one caller took over, across processes
    assert len({v for r in results for v in r["values"]}) == 1
    # Whichever comes first: the lease runs out (checked every quarter lease) or the wait ends.
    bound = min(lock_timeout * 1.25, wait_timeout) + 0.1
    assert max(latency for r in results for latency in r["latencies"]) < bound + 1.0
    assert time.monotonic() - killed_at < bound + 6  # plus the time to spawn the callers


# -- failures of the callable ------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_callable_exception_reaches_every_waiter_and_releases_the_lock(fenced: Any) -> None:
    calls = Counter()

    def explode() -> None:
        calls()
        time.sleep(0.2)
        raise Boom("no")

    results, errors, _ = in_threads(10, lambda: fenced.get_or_set("boom", explode, 60))
    assert results == []
    assert len(errors) == 10 and all(type(e) is Boom for e in errors)
    assert calls.calls == 1
    assert fenced.get_or_set("boom", lambda: "recovered", 60) == "recovered"  # the lock was released


def test_callable_exception_serves_the_stale_value(fenced: Any, caplog: Any) -> None:
    store_envelope(fenced, "stale", "old", soft_in=-1, delta=0.1)

    def explode() -> None:
        raise Boom("no")

    assert fenced.get_or_set("stale", explode, 60) == "old"
    assert "recompute of stale failed" in caplog.text
    assert fenced.stats()["errors"] == 1  # flushed or pending: snapshot() counts both


def test_unpicklable_value_gives_a_clear_error_and_leaves_no_lock(fenced: Any) -> None:
    with pytest.raises(TypeError, match="pickle"):
        fenced.get_or_set("unpicklable", threading.Lock, 60)
    lock = fenced._fence().lock
    key = fenced._key("unpicklable")
    assert lock.acquire(key, "next", 5, time.time())
    lock.release(key, "next")


def test_recompute_that_reads_its_own_key_raises_instead_of_hanging(fenced: Any) -> None:
    def recursive() -> Any:
        return fenced.get_or_set("self", recursive, 60)

    with pytest.raises(FenceReentryError):
        fenced.get_or_set("self", recursive, 60)

    async def arecursive() -> Any:
        return await fenced.aget_or_set("aself", arecursive, 60)

    with pytest.raises(FenceReentryError):
        asyncio.run(fenced.aget_or_set("aself", arecursive, 60))


def test_cancelled_waiter_does_not_stop_the_leader(fenced: Any) -> None:
    compute = Counter(0.3)

    async def scenario() -> list[Any]:
        leader = asyncio.create_task(fenced.aget_or_set("cancel", compute, 60))
        while compute.calls == 0:  # the leader is computing
            await asyncio.sleep(0.01)
        waiter = asyncio.create_task(fenced.aget_or_set("cancel", compute, 60))
        await asyncio.sleep(0.05)
        waiter.cancel()
        return [await leader, waiter.cancelled()]

    assert asyncio.run(scenario()) == ["value-1", True]
    assert compute.calls == 1


def test_cancelled_leader_is_taken_over_by_a_waiter(fenced: Any) -> None:
    calls: list[int] = []
    started: list[asyncio.Event] = []

    async def compute() -> str:
        calls.append(1)
        started[0].set()
        await asyncio.sleep(0.3)
        return f"value-{len(calls)}"

    async def scenario() -> tuple[Any, bool, float]:
        started.append(asyncio.Event())
        leader = asyncio.create_task(fenced.aget_or_set("cancel-leader", compute, 60))
        await asyncio.wait_for(started[0].wait(), 10)  # the leader is computing
        waiter = asyncio.create_task(fenced.aget_or_set("cancel-leader", compute, 60))
        await asyncio.sleep(0.05)
        began = time.monotonic()
        leader.cancel()
        value = await waiter
        await asyncio.gather(leader, return_exceptions=True)
        return value, leader.cancelled(), time.monotonic() - began

    value, cancelled, elapsed = asyncio.run(scenario())
    assert cancelled and value == "value-2" and len(calls) == 2
    assert elapsed < 2.0  # the cancelled leader released its lock: nobody waited for WAIT_TIMEOUT (5 s)


# -- early refresh, stale serving, invalidation --------------------------------------------------------


def test_xfetch_refreshes_once_while_the_others_get_the_current_value(fenced: Any) -> None:
    store_envelope(fenced, "near", "current", soft_in=1.0, delta=1000)  # XFetch picks nearly every caller
    compute = Counter(0.5)
    results, errors, latencies = in_threads(20, lambda: fenced.get_or_set("near", compute, 60))
    assert errors == [] and compute.calls == 1
    assert sorted(results) == ["current"] * 19 + ["value-1"]
    assert sorted(latencies)[-2] < 0.45  # nobody but the refresher waited for the 0.5 s recompute
    assert fenced.get("near") == "value-1"


def test_xfetch_leaves_fresh_values_alone(fenced: Any) -> None:
    store_envelope(fenced, "fresh", "current", soft_in=3600, delta=0.01)
    compute = Counter()
    assert [fenced.get_or_set("fresh", compute, 60) for _ in range(100)] == ["current"] * 100
    assert compute.calls == 0


def test_stale_value_is_served_at_once_while_one_caller_refreshes(fenced: Any) -> None:
    store_envelope(fenced, "stale", "old", soft_in=-5, delta=0.1)
    compute = Counter(0.5)
    results, errors, latencies = in_threads(20, lambda: fenced.get_or_set("stale", compute, 60))
    assert errors == [] and compute.calls == 1
    assert sorted(results) == ["old"] * 19 + ["value-1"]
    assert sorted(latencies)[-2] < 0.45


def test_grace_zero_makes_callers_wait_for_the_new_value(fenced: Any, settings: Any) -> None:
    settings.CACHES["default"]["OPTIONS"]["GRACE"] = 0
    settings.CACHES = dict(settings.CACHES)
    fenced = caches["default"]
    store_envelope(fenced, "nograce", "old", soft_in=-1, delta=0.1)
    compute = Counter(0.3)
    results, errors, _ = in_threads(10, lambda: fenced.get_or_set("nograce", compute, 60))
    assert errors == [] and compute.calls == 1
    assert results == ["value-1"] * 10


def test_mark_stale_refreshes_once_and_readers_keep_the_old_value(fenced: Any) -> None:
    assert fenced.get_or_set("soft", lambda: "old", 60) == "old"
    assert fenced.mark_stale("soft") is True
    assert fenced.get("soft") == "old"
    compute = Counter(0.3)
    results, errors, _ = in_threads(10, lambda: fenced.get_or_set("soft", compute, 60))
    assert errors == [] and compute.calls == 1
    assert sorted(results) == ["old"] * 9 + ["value-1"]
    assert fenced.mark_stale("absent") is False
    assert asyncio.run(fenced.amark_stale("soft")) is True


@pytest.mark.parametrize("invalidate", ["delete", "mark_stale"])
def test_recompute_running_during_an_invalidation_is_not_stored(fenced: Any, invalidate: str) -> None:
    """cacheops #302: a write after an invalidation must not bring the old data back as fresh."""
    with refresh_in_progress(fenced, "inval"):
        getattr(fenced, invalidate)("inval")
    expected = None if invalidate == "delete" else "old"
    assert fenced.get("inval") == expected


# -- stats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backing", ["redis", "pymemcache"], indirect=True)
def test_stats_are_summed_across_processes(fenced_config: Any) -> None:
    caches["default"].reset_stats()
    run_in_processes(3, "hit_cold_key", fenced_config, key="counted", threads=4, compute_seconds=0.1)
    stats = caches["default"].stats()
    assert stats["recomputes"] == 1
    assert stats["misses"] + stats["lock_waits"] + stats["hits"] == 12
    assert set(stats) == {"hits", "misses", "stale_served", "early_refreshes", "recomputes", "lock_waits",
                          "wait_timeouts", "errors", "recompute_microseconds"}
    assert stats["recompute_microseconds"] >= 100_000  # the one recompute took 0.1 s


def test_async_callers_on_one_loop_use_one_cache_instance_per_worker_thread(fenced: Any) -> None:
    """Django's caches are context-local: a worker must not borrow the event loop thread's client."""
    import threading as threading_module

    seen: dict[int, set[int]] = {}
    lock = threading_module.Lock()
    original = type(caches["backing"]).get

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            seen.setdefault(id(self), set()).add(threading_module.get_ident())
        return original(self, *args, **kwargs)

    async def many() -> None:
        await asyncio.gather(*[fenced.aget(f"k{i}") for i in range(20)],
                             *[fenced.aget_or_set(f"cold{i}", Counter(0.05), 60) for i in range(20)])

    type(caches["backing"]).get = spy
    try:
        asyncio.run(many())
    finally:
        type(caches["backing"]).get = original
    assert seen and all(len(threads) == 1 for threads in seen.values())


@pytest.mark.parametrize("backing", SERVER_BACKINGS, indirect=True)
def test_one_waiter_takes_over_across_processes_when_the_holder_hangs(fenced_config: Any) -> None:
    fenced_config["default"]["OPTIONS"].update({"WAIT_TIMEOUT": 0.5, "LOCK_TIMEOUT": 30})
    fenced = caches["default"]
    fenced_config_copy = {alias: dict(config) for alias, config in fenced_config.items()}
    key = fenced._key("hung")
    assert fenced._fence().lock.acquire(key, "hung-holder", 30, time.time() + 600)
    results = run_in_processes(3, "hit_cold_key", fenced_config_copy, key="hung", threads=3, compute_seconds=0.3)
    assert sum(r["recomputes"] for r in results) == 1
    assert len({v for r in results for v in r["values"]}) == 1
    assert max(latency for r in results for latency in r["latencies"]) < 0.5 + 0.5 + 0.3 + 1.0
    fenced._fence().lock.release(key, "hung-holder")


def test_set_during_a_refresh_is_not_overwritten(fenced: Any) -> None:
    with refresh_in_progress(fenced, "written"):
        fenced.set("written", "written-meanwhile")
    assert fenced.get("written") == "written-meanwhile"


def test_the_callable_keeps_the_callers_context(fenced: Any) -> None:
    from django.utils import translation

    def language() -> str | None:
        return translation.get_language()

    async def alanguage() -> str | None:
        return translation.get_language()

    async def scenario() -> list[Any]:
        with translation.override("fr"):
            return [await fenced.aget_or_set("lang-sync", language, 60),
                    await fenced.aget_or_set("lang-async", alanguage, 60)]

    with translation.override("de"):
        assert fenced.get_or_set("lang", language, 60) == "de"
    assert asyncio.run(scenario()) == ["fr", "fr"]


def test_many_async_misses_whose_callables_use_the_cache_do_not_deadlock(fenced: Any) -> None:
    """A leader must not hold a worker thread while its async callable awaits the cache itself."""

    async def compute() -> int:
        await fenced.aset("side", 1)
        await asyncio.sleep(0.05)
        return int(await fenced.aget("side"))

    async def scenario() -> list[Any]:
        return await asyncio.wait_for(
            asyncio.gather(*[fenced.aget_or_set(f"cold-{i}", compute, 60) for i in range(60)]), 30)

    assert asyncio.run(scenario()) == [1] * 60


def test_get_or_set_with_a_zero_timeout_returns_an_existing_value(fenced: Any) -> None:
    fenced.set("existing", "there")
    assert fenced.get_or_set("existing", lambda: "computed", 0) == "there"
    assert asyncio.run(fenced.aget_or_set("existing", lambda: "computed", 0)) == "there"
    assert asyncio.run(fenced.aget_or_set("absent", lambda: "computed", 0)) == "computed"


def test_stats_count_what_happened(fenced: Any) -> None:
    stats = fenced._stats()
    stats.flush()
    fenced.reset_stats()
    in_threads(5, lambda: fenced.get_or_set("counted", Counter(0.2), 60))  # 1 miss, 4 waits, 1 recompute
    fenced.get_or_set("counted", Counter(), 60)  # a hit
    store_envelope(fenced, "early", "current", soft_in=1.0, delta=1000)
    fenced._fence()._draw = lambda: 0.5  # XFetch picks this caller
    fenced.get_or_set("early", Counter(), 60)  # an early refresh, and its recompute
    store_envelope(fenced, "failing", "old", soft_in=-1, delta=0.1)

    def explode() -> None:
        raise ValueError("no")

    fenced.get_or_set("failing", explode, 60)  # a stale value served after an error (no recompute counted)
    stats = fenced.stats()
    assert stats.pop("recompute_microseconds") > 0
    assert stats == {"hits": 1, "misses": 1, "stale_served": 1, "early_refreshes": 1, "recomputes": 2,
                     "lock_waits": 4, "wait_timeouts": 0, "errors": 1}


def test_the_envelope_weighs_by_the_measured_recompute_time(fenced: Any) -> None:
    fenced.get_or_set("measured", Counter(0.2), 60)
    envelope = caches["backing"].get("measured")
    assert isinstance(envelope, Envelope) and 0.2 <= envelope.delta < 1.0


@pytest.mark.parametrize("backing", ["locmem", "redis", "pymemcache"], indirect=True)
def test_hit_is_one_round_trip(fenced: Any, backing: tuple[str, str]) -> None:
    kind, location = backing
    fenced.get_or_set("warm", lambda: "value", 60)
    if kind == "locmem":
        calls = []
        original = type(caches["backing"]).get
        type(caches["backing"]).get = lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
        try:
            for _ in range(100):
                fenced.get_or_set("warm", lambda: "other", 60)
        finally:
            type(caches["backing"]).get = original
        assert len(calls) == 100
        return
    before = _gets(kind, location)
    for _ in range(100):
        assert fenced.get_or_set("warm", lambda: "other", 60) == "value"
    assert _gets(kind, location) - before == 100


def _gets(kind: str, location: str) -> int:
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(location)
        try:
            return int(client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))
        finally:
            client.close()
    from pymemcache.client.base import Client

    host, port = location.split(":")
    client = Client((host, int(port)))
    try:
        return int(client.stats()[b"cmd_get"])
    finally:
        client.close()


def test_a_late_leader_does_not_clobber_a_newer_value(fenced: Any, settings: Any) -> None:
    """c2corg/v6_api #368: a recompute longer than LOCK_TIMEOUT; the successor's value must stay."""
    settings.CACHES["default"]["OPTIONS"]["LOCK_TIMEOUT"] = 1
    other = dict(settings.CACHES["default"])  # another alias: its own flights, the same keys and locks
    other["OPTIONS"] = {**other["OPTIONS"], "CHECK_INTERVAL": 0.006}
    settings.CACHES["other"] = other
    settings.CACHES = dict(settings.CACHES)
    slow, fast = caches["default"], caches["other"]
    started = threading.Event()

    def late() -> str:
        started.set()
        time.sleep(1.6)
        return "late"

    worker = threading.Thread(target=lambda: slow.get_or_set("lease", late, 60))
    worker.start()
    assert started.wait(10)
    time.sleep(1.2)  # the lease ran out
    assert fast.get_or_set("lease", lambda: "new", 60) == "new"
    worker.join(10)
    assert fast.get("lease") == "new"


def test_a_timeout_error_from_the_callable_reaches_every_caller_once(fenced: Any) -> None:
    calls = Counter()

    def upstream() -> None:
        calls()
        time.sleep(0.2)
        raise TimeoutError("upstream timed out")

    _, errors, _ = in_threads(5, lambda: fenced.get_or_set("timeout-error", upstream, 60))
    assert calls.calls == 1
    assert [type(e) for e in errors] == [TimeoutError] * 5

    async def many() -> list[Any]:
        return await asyncio.gather(*[fenced.aget_or_set("atimeout-error", upstream, 60) for _ in range(5)],
                                    return_exceptions=True)

    assert [type(e) for e in asyncio.run(many())] == [TimeoutError] * 5
    assert calls.calls == 2


def test_stop_iteration_from_the_callable_keeps_its_type(fenced: Any) -> None:
    def exhausted() -> None:
        raise StopIteration("empty")

    with pytest.raises(StopIteration):
        fenced.get_or_set("stop", exhausted, 60)
    # A coroutine cannot raise StopIteration (PEP 479): Python turns it into RuntimeError, as it
    # does for Django's own aget_or_set. What matters is that nothing hangs.
    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(fenced.aget_or_set("astop", exhausted, 60))


@pytest.mark.parametrize("backing", ["locmem", "redis", "pylibmc"], indirect=True)
def test_cancelling_a_task_while_it_takes_the_lock_leaves_no_lock(fenced: Any) -> None:
    lock_class = type(fenced._fence().lock)
    original = lock_class.acquire
    slow_once = [True]

    def slow_acquire(self: Any, *args: Any) -> bool:
        taken = bool(original(self, *args))
        if slow_once and slow_once.pop():
            time.sleep(0.3)  # the task is cancelled while this call runs in its worker thread
        return taken

    async def scenario() -> float:
        task = asyncio.create_task(fenced.aget_or_set("cancel-acquire", lambda: "first", 60))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        began = time.monotonic()
        assert await fenced.aget_or_set("cancel-acquire", lambda: "second", 60) == "second"
        return time.monotonic() - began

    lock_class.acquire = slow_acquire  # type: ignore[method-assign]
    try:
        assert asyncio.run(scenario()) < 1.0  # not WAIT_TIMEOUT (5 s): the lock was released
    finally:
        lock_class.acquire = original  # type: ignore[method-assign]


def test_an_early_refresh_outliving_the_old_entry_is_stored(fenced: Any, settings: Any) -> None:
    settings.CACHES["default"]["OPTIONS"]["GRACE"] = 0
    settings.CACHES = dict(settings.CACHES)
    fenced = caches["default"]
    store_envelope(fenced, "outlived", "old", soft_in=0.9, delta=1000, hard=1)  # XFetch refreshes now
    assert fenced.get_or_set("outlived", Counter(1.3, value="new"), 60) == "new"  # the old entry expires meanwhile
    assert fenced.get("outlived") == "new"


@pytest.mark.parametrize("backing", ["redis", "pymemcache"], indirect=True)
def test_a_leader_slower_than_wait_timeout_is_taken_over_once(fenced_config: Any) -> None:
    fenced_config["default"]["OPTIONS"].update({"WAIT_TIMEOUT": 0.5, "LOCK_TIMEOUT": 10})
    results = run_in_processes(3, "hit_cold_key", fenced_config, key="slow-leader", threads=3, compute_seconds=1.5)
    assert [r["errors"] for r in results] == [[]] * 3
    assert sum(r["recomputes"] for r in results) == 2  # the slow leader, and one waiter across processes
