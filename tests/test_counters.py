"""CounterService on every client it accepts, against real servers; concurrency across processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from django_fence.counters import CounterService
from tests.conftest import backing_config, flush, pylibmc_client
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(60)

CLIENTS = ["locmem", "redis", "django_redis", "pylibmc", "pymemcache", "raw_pylibmc"]


@pytest.fixture(params=CLIENTS)
def service(request: pytest.FixtureRequest, settings: Any) -> Iterator[CounterService]:
    """A CounterService over one client kind, on a flushed real server."""
    kind = request.param
    if kind == "locmem":
        location = f"counters-{uuid.uuid4().hex}"
    elif kind in ("redis", "django_redis"):
        location = request.getfixturevalue("redis_url")
    else:
        location = request.getfixturevalue("memcached_location")
    flush("pylibmc" if kind == "raw_pylibmc" else kind, location)
    if kind == "raw_pylibmc":
        yield CounterService(pylibmc_client(location))
        return
    settings.CACHES = {**settings.CACHES, "counters": backing_config(kind, location)}
    yield CounterService(caches["counters"])
    caches["counters"].close()


def test_counter_examples_from_the_issue(service: CounterService) -> None:
    assert service.increment("page:home") == 1
    assert service.increment("page:home", 4) == 5
    assert service.bulk_bump({"stock": 3}) == {"stock": 3}
    assert service.decrement("stock") == 2
    assert service.decrement("stock", 5) == 0
    assert service.get_count("stock") == 0
    assert service.get_count("page:home") == 5


def test_counter_missing_starts_at_zero(service: CounterService) -> None:
    assert service.get_count("never", default=-1) == -1
    assert service.decrement("fresh-down", 3) == 0
    assert service.increment("fresh-zero", 0) == 0
    assert service.get_count("fresh-zero", default=-1) == 0


def test_counter_bulk_bump_increments_decrements_and_floors(service: CounterService) -> None:
    service.increment("a", 10)
    assert service.bulk_bump({"a": -4, "b": 7, "c": -2, "d": 0}) == {"a": 6, "b": 7, "c": 0, "d": 0}
    assert [service.get_count(k) for k in "abcd"] == [6, 7, 0, 0]


@pytest.mark.parametrize(("delta", "error"), [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                              (True, TypeError), (None, TypeError)])
def test_counter_bad_delta_raises_and_writes_nothing(service: CounterService, delta: Any,
                                                     error: type[Exception]) -> None:
    with pytest.raises(error, match="delta"):
        service.increment("bad-delta", delta)
    with pytest.raises(error, match="delta"):
        service.decrement("bad-delta", delta)
    if error is TypeError:  # a negative delta is bulk_bump's way of decrementing
        with pytest.raises(TypeError, match="delta"):
            service.bulk_bump({"bad-delta-first": 1, "bad-delta": delta})
    assert service.get_count("bad-delta", default=-1) == -1
    assert service.get_count("bad-delta-first", default=-1) == -1


@pytest.mark.parametrize(("key", "error"), [("has space", ValueError), ("tab\there", ValueError),
                                            ("x" * 251, ValueError), ("", ValueError), (b"bytes", TypeError),
                                            (7, TypeError)])
def test_counter_refused_key_raises_and_writes_nothing(service: CounterService, key: Any,
                                                       error: type[Exception]) -> None:
    with pytest.raises(error, match="key"):
        service.increment(key)
    with pytest.raises(error, match="key"):
        service.bulk_bump({"good": 1, key: 1})
    assert service.get_count("good", default=-1) == -1


def test_counter_rejects_other_clients_and_bad_ttl() -> None:
    with pytest.raises(TypeError, match=r"pylibmc\.Client or a Django cache"):
        CounterService(object())
    with pytest.raises(ValueError, match="default_ttl"):
        CounterService(caches["votes"], default_ttl=-1)


def test_counter_default_ttl_applies_when_created_on_redis(redis_url: str, settings: Any) -> None:
    import redis

    flush("redis", redis_url)
    settings.CACHES = {**settings.CACHES, "counters": backing_config("redis", redis_url)}
    service = CounterService(caches["counters"], default_ttl=100)
    service.increment("ttl-up")
    service.decrement("ttl-down")
    raw = redis.Redis.from_url(redis_url)
    key_up, key_down = caches["counters"].make_key("ttl-up"), caches["counters"].make_key("ttl-down")
    assert 0 < raw.ttl(key_up) <= 100 and 0 < raw.ttl(key_down) <= 100
    raw.persist(key_up)
    service.increment("ttl-up")  # an existing counter keeps its (lack of) expiry
    assert raw.ttl(key_up) == -1
    raw.close()


def test_counter_matches_memcached_semantics_side_by_side(redis_url: str, memcached_location: str,
                                                          settings: Any) -> None:
    """The same operations through raw pylibmc on memcached and through CounterService on LocMem and Redis."""
    import pylibmc

    flush("pylibmc", memcached_location)
    flush("redis", redis_url)
    settings.CACHES = {**settings.CACHES, "r": backing_config("redis", redis_url),
                       "l": backing_config("locmem", "side-by-side")}
    ops = [("incr", 5), ("decr", 2), ("decr", 10), ("incr", 1), ("decr", 1), ("decr", 1), ("incr", 7)]
    memcached = pylibmc_client(memcached_location)
    memcached.add("k", 0)
    expected = [getattr(memcached, op)("k", delta) for op, delta in ops]
    with pytest.raises(pylibmc.NotFound):
        memcached.incr("missing")  # what CounterService hides: memcached does not create on incr
    for alias in ("r", "l"):
        service = CounterService(caches[alias])
        got = [service.increment("k", d) if op == "incr" else service.decrement("k", d) for op, d in ops]
        assert got == expected == [5, 3, 0, 1, 0, 0, 7]


@pytest.mark.parametrize("kind", ["raw_pylibmc", "pylibmc", "redis"])
def test_counter_concurrent_first_increments_sum_exactly(kind: str, request: pytest.FixtureRequest,
                                                         settings: Any) -> None:
    """PITFALLS 19: 8 processes x 1000 increments of one fresh key end at exactly 8000."""
    location = request.getfixturevalue("redis_url" if kind == "redis" else "memcached_location")
    flush("pylibmc" if kind == "raw_pylibmc" else kind, location)
    key = f"fresh-{uuid.uuid4().hex}"
    config = backing_config("pylibmc" if kind == "raw_pylibmc" else kind, location)
    results = run_in_processes(8, "bump_counter", {"counters": config, "default": config}, kind=kind,
                               location=location, key=key, times=1000)
    assert sum(r["errors"] for r in results) == 0
    seen = sorted(value for r in results for value in r["seen"])
    assert seen == list(range(1, 8001))  # every increment got its own value: none lost, none repeated
    settings.CACHES = {**settings.CACHES, "counters": config}
    service = CounterService(pylibmc_client(location) if kind == "raw_pylibmc" else caches["counters"])
    assert service.get_count(key) == 8000


def test_counter_evicted_between_add_and_incr_is_created_again(settings: Any) -> None:
    """PITFALLS 19, the interleaving itself: the new counter vanishes right after our add; no count is lost."""
    from django.core.cache.backends.locmem import LocMemCache

    class EvictsOnce(LocMemCache):
        evicted = False

        def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
            if not EvictsOnce.evicted:  # another process's add won, and its counter was evicted at once
                EvictsOnce.evicted = True
                return False
            return super().add(key, value, timeout, version)

    service = CounterService(EvictsOnce("evicts-once", {}))
    assert service.increment("fresh", 3) == 3
    assert service.increment("fresh") == 4
    assert EvictsOnce.evicted


def test_counter_default_ttl_over_30_days_does_not_expire_at_once_on_raw_pylibmc(memcached_location: str) -> None:
    service = CounterService(pylibmc_client(memcached_location), default_ttl=31 * 24 * 3600)
    key = f"long-{uuid.uuid4().hex}"
    assert service.increment(key, 3) == 3
    assert service.get_count(key) == 3


def test_a_cache_that_answers_false_instead_of_counting_raises_not_a_silent_zero() -> None:
    """pymemcache's HashClient answers False, not an error, while it deems a server dead."""
    from django.core.cache.backends.locmem import LocMemCache

    from django_fence.exceptions import BackendUnavailable

    class DeemedDead(LocMemCache):
        dead = False

        def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
            return False if DeemedDead.dead else super().incr(key, delta, version)

        def decr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
            return False if DeemedDead.dead else super().decr(key, delta, version)

    service = CounterService(DeemedDead("deemed-dead", {}))
    assert service.increment("votes", 2) == 2
    DeemedDead.dead = True
    with pytest.raises(BackendUnavailable, match="did not count"):
        service.increment("votes", 3)
    with pytest.raises(BackendUnavailable, match="did not count"):
        service.decrement("votes", 1)
    DeemedDead.dead = False
    assert service.increment("votes", 3) == 5
