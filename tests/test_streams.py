"""Streams against a real redis-server, side by side with good-redis 0.2.8 on another database."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import json
import logging
import random
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from django_fence.exceptions import BackendUnavailable
from django_fence.streams import AsyncStreams, Streams, commands, scripts
from tests.streams_support import CountingClient, peer_client, skewed_clock, snapshot

good_redis = pytest.importorskip("good_redis")  # installed by the Makefile (see its comment)

pytestmark = pytest.mark.timeout(60)
UTC = datetime.UTC
PAST = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
FUTURE = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)


@pytest.fixture
def peer(redis_url: str, redis_client: Any) -> Any:
    """good-redis's client on database 1 of the same server (ours uses database 0)."""
    client = peer_client(redis_url, 1, good_redis.Redis)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def streams(redis_client: Any) -> Streams:
    return Streams(redis_client)


def both(streams: Streams, peer: Any, call: Callable[[Any], Any]) -> Any:
    """Run ``call`` on ours and on good-redis; both the results and the whole databases must match."""
    ours, theirs = call(streams), call(peer)
    assert ours == theirs
    assert snapshot(streams.client) == snapshot(peer)
    return ours


# --- good-redis's semantics, side by side ----------------------------------------------------------


def test_psadd_adds_to_priority_and_blocks_excluded_or_pulled_keys_like_good_redis(streams: Streams,
                                                                                   peer: Any) -> None:
    assert both(streams, peer, lambda s: s.psadd("q", "a", "va", 3)) == 3
    assert both(streams, peer, lambda s: s.psadd("q", "a", "va2", 2)) == 5  # ZINCRBY, value replaced
    assert both(streams, peer, lambda s: s.psaddmany("q", [("b", "vb", 1), ("c", 7, 4)])) == [1, 4]
    assert both(streams, peer, lambda s: s.pspull("q", 1, gate=True, expire_at=FUTURE)) == {"a": b"va2"}
    assert both(streams, peer, lambda s: s.psadd("q", "a", "again")) == 0  # excluded and expiring
    assert both(streams, peer, lambda s: s.pspull("q", 1, expire_at=FUTURE)) == {"c": b"7"}
    assert both(streams, peer, lambda s: s.psadd("q", "c", "again")) == 0  # still in the expiration set
    assert both(streams, peer, lambda s: s.psadd("q", "a", "back", 2, readd=True)) == 2
    assert both(streams, peer, lambda s: s.psget("q", "a")) == b"back"
    assert both(streams, peer, lambda s: s.pskeys("q")) == [b"b", b"a"]
    assert both(streams, peer, lambda s: s.psvalues("q")) == {"a": b"back", "b": b"vb"}
    assert both(streams, peer, lambda s: s.pslen("q")) == 2


def test_pspull_without_purge_keeps_items_at_priority_minus_one_like_good_redis(streams: Streams,
                                                                                peer: Any) -> None:
    both(streams, peer, lambda s: s.psaddmany("q", [("a", "1", 5), ("b", "2", 3), ("c", "3", 1)]))
    assert both(streams, peer, lambda s: s.pspull("q", 1, purge=False, expire_at=FUTURE)) == {"a": b"1"}
    assert both(streams, peer, lambda s: s.pspull("q", 2, expire_at=FUTURE)) == {"b": b"2", "c": b"3"}
    assert streams.client.zscore("q:s", "a") == -1


def test_psdeletebelowthreshold_and_psdecrement_all_match_good_redis(streams: Streams, peer: Any) -> None:
    both(streams, peer, lambda s: s.psaddmany("q", [(f"k{i}", f"v{i}", i) for i in range(10)]))
    both(streams, peer, lambda s: s.psincrement("q", "k0", 2.5))
    assert sorted(both(streams, peer, lambda s: s.psdeletebelowthreshold("q", 2, gate=True))) == [b"k1", b"k2"]
    assert both(streams, peer, lambda s: s.psadd("q", "k1", "x")) == 0  # gated
    streams.psdecrement_all("q", 2)
    peer.psdecrement_all("q", 2)  # returns 1 whatever it did; ours returns how many items changed
    assert snapshot(streams.client) == snapshot(peer)
    assert streams.psdecrement_all("q", 0.5) == 8
    assert streams.client.zscore("q:s", "k9") == 6.5


def test_psexpire_removes_items_whose_block_ended_in_every_stream_like_good_redis(streams: Streams,
                                                                                  peer: Any) -> None:
    for name in ("one", "two"):
        both(streams, peer, lambda s, n=name: s.psaddmany(n, [(f"k{i}", "v", i) for i in range(6)]))
        both(streams, peer, lambda s, n=name: s.pspull(n, 2, expire_at=PAST))
        both(streams, peer, lambda s, n=name: s.pspull(n, 2, purge=False, expire_at=PAST))
        both(streams, peer, lambda s, n=name: s.pspull(n, 1, expire_at=FUTURE))
    streams.psexpire()
    peer.psexpire()
    assert snapshot(streams.client) == snapshot(peer)
    assert streams.pskeys("one") == [b"k0"]
    assert streams.client.zrange("one:exp", 0, -1) == [b"k1"]


def test_psdelete_removes_the_stream_and_its_registry_entry_like_good_redis(streams: Streams, peer: Any) -> None:
    both(streams, peer, lambda s: s.psaddmany("q", [("a", "1", 1)]))
    both(streams, peer, lambda s: s.psadd("r", "a", "1", 1))
    both(streams, peer, lambda s: s.pspull("q", 1, gate=True, expire_at=FUTURE))
    streams.psdelete("q")
    peer.psdelete("q")
    assert snapshot(streams.client) == snapshot(peer)
    assert streams.psnames() == {b"r"}


@pytest.mark.parametrize("batch", [1000, 3], ids=["batch-1000", "batch-3"])
def test_random_operations_give_good_redis_results_and_data(redis_client: Any, peer: Any, batch: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """300 seeded random operations on two streams: every result and the whole database match after each.

    Both clients read one fixed clock (ours through ``clock=``, good-redis's through its
    ``datetime``), so relative expiries agree to the second. ``batch`` 3 makes psexpire and
    psdeletebelowthreshold work in many small scripts. Left out, each for a documented reason
    (see the README): pspull(purge=False) with count > 1 (good-redis can pop the same item twice),
    psdecrement_all's return value. psadd's float priorities are compared as good-redis
    returns them (truncated to an integer).
    """
    monkeypatch.setattr(commands, "BATCH", batch)
    now = float(int(time.time())) + 0.5
    streams = Streams(redis_client, clock=lambda: now)
    rng = random.Random(6)
    keys = [f"k{i}" for i in range(12)]
    expiries = [PAST, FUTURE, datetime.timedelta(0), datetime.timedelta(seconds=-30), datetime.timedelta(hours=1)]

    def operation() -> tuple[str, Callable[[Any], Any]]:
        name, key = rng.choice(["s1", "s2"]), rng.choice(keys)
        score = rng.choice([rng.randint(-3, 6), round(rng.uniform(-3, 6), 2)])
        readd = rng.random() < 0.2
        expire_at = rng.choice(expiries)
        count, gate = rng.randint(1, 4), rng.random() < 0.3
        items = [(rng.choice(keys), f"v{rng.randint(0, 99)}", rng.choice([rng.randint(-2, 5), rng.uniform(-2, 5)]))
                 for _ in range(rng.randint(1, 4))]
        choices: list[tuple[str, Callable[[Any], Any]]] = [
            ("psadd", lambda s: s.psadd(name, key, f"v{score}", score, readd)),
            ("psadd", lambda s: s.psadd(name, key, f"w{score}", score)),
            ("pspull", lambda s: s.pspull(name, count, True, gate, expire_at)),
            ("pspull", lambda s: s.pspull(name, 1, False, False, expire_at)),
            ("psincrement", lambda s: s.psincrement(name, key, score)),
            ("psdeletebelowthreshold", lambda s: s.psdeletebelowthreshold(name, score - 2, gate)),
            ("psget", lambda s: s.psget(name, key)),
            ("pskeys", lambda s: s.pskeys(name)),
            ("pskeys", lambda s: s.pskeys(name, withscores=True, desc=True)),
            ("psvalues", lambda s: s.psvalues(name)),
            ("pslen", lambda s: s.pslen(name)),
            ("psexpire", lambda s: [s.psexpire(), None][1]),
        ]
        if readd:  # good-redis's sync psaddmany puts its SREM and ZREM counts first: drop them
            choices.append(("psaddmany", lambda s: s.psaddmany(name, items, True)[-len(items):]))
        else:
            choices.append(("psaddmany", lambda s: s.psaddmany(name, items)))
        return rng.choice(choices)

    def as_good_redis_returns(what: str, result: Any) -> Any:
        """good-redis's psadd script returns Lua numbers: Redis truncates them to integers."""
        if what == "psadd":
            return int(result)
        if what == "psaddmany":
            return [int(priority) for priority in result]
        return result

    with fixed_datetime(monkeypatch, now):
        for step in range(300):
            what, call = operation()
            ours, theirs = as_good_redis_returns(what, call(streams)), call(peer)
            assert ours == theirs, (step, what)
            assert snapshot(streams.client) == snapshot(peer), (step, what)


def test_async_streams_match_good_redis_async_client(redis_url: str, redis_client: Any) -> None:
    """Same data; the results differ only where the README says (its async client returns pipeline lists)."""
    async def scenario() -> None:
        ours = AsyncStreams(redis.asyncio.Redis.from_url(redis_url))
        theirs = peer_client(redis_url, 1, good_redis.AsyncRedis, flush=False)
        await theirs.flushdb()
        try:
            items = [("a", "1", 3), ("b", "2", 5), ("c", "3", 1)]
            assert await ours.psaddmany("q", items, with_decay=True) == [3, 5, 1]
            assert await theirs.psaddmany("q", items, with_decay=True) == [1, 3, 5, 1]  # its SADD of :ps:decay first
            assert await ours.psadd("r", "x", "y", 2) == 2
            assert await theirs.psadd("r", "x", "y", 2) == [2]  # the pipeline's list
            assert await ours.psadd("r", "x", "z", 1, readd=True, with_decay=True) == 3
            assert await theirs.psadd("r", "x", "z", 1, readd=True, with_decay=True) == 3
            for call in (lambda s: s.pspull("q", 2, gate=True, expire_at=PAST), lambda s: s.pskeys("q"),
                         lambda s: s.pskeys("q", withscores=True, desc=True), lambda s: s.psvalues("q"),
                         lambda s: s.psdeletebelowthreshold("q", 2), lambda s: s.psnames(),
                         lambda s: s.psdecay(), lambda s: s.psget("r", "x"), lambda s: s.pslen("r"),
                         lambda s: s.psincrement("r", "x", 2)):
                assert await call(ours) == await call(theirs)
            assert await ours.psexpire() == 2
            assert await theirs.psexpire() == []  # an empty pipeline: it sends each command on its own
            assert await ours.psdelete("r") is True
            assert await theirs.psdelete("r") == [2, 1]  # DEL's and SREM's counts
            sync_theirs = redis.Redis.from_url(redis_url, db=1)
            assert snapshot(redis_client) == snapshot(sync_theirs)
            sync_theirs.close()
        finally:
            await ours.client.aclose()
            await theirs.flushdb()
            await theirs.aclose()

    asyncio.run(scenario())


# --- where we differ from good-redis, on purpose ---------------------------------------------------


def test_psadd_returns_the_exact_priority_where_good_redis_truncates(streams: Streams, peer: Any) -> None:
    assert streams.psadd("q", "a", "v", 1.5) == 1.5
    assert peer.psadd("q", "a", "v", 1.5) == 1  # Lua's number becomes an integer reply
    assert snapshot(streams.client) == snapshot(peer)  # the data is the same


def test_pspull_without_purge_returns_count_distinct_items_where_good_redis_may_repeat_one(
        streams: Streams, peer: Any) -> None:
    both(streams, peer, lambda s: s.psaddmany("q", [("a", "1", 5), ("b", "2", -3)]))
    assert streams.pspull("q", 2, purge=False, expire_at=FUTURE) == {"a": b"1", "b": b"2"}
    assert peer.pspull("q", 2, purge=False, expire_at=FUTURE) == {"a": b"1"}  # popped "a" again at -1


def test_psaddmany_with_readd_returns_one_result_per_item(streams: Streams, peer: Any) -> None:
    assert streams.psaddmany("q", [("a", "1", 2)], readd=True) == [2]
    assert peer.psaddmany("q", [("a", "1", 2)], readd=True) == [0, 0, 2]  # its sync client leaks SREM/ZREM counts


def fixed_datetime(monkeypatch: pytest.MonkeyPatch, now: float) -> contextlib.AbstractContextManager[None]:
    return skewed_datetime(monkeypatch, 0, fixed=now)


# --- clocks (PITFALLS 23) --------------------------------------------------------------------------


@contextlib.contextmanager
def skewed_datetime(monkeypatch: pytest.MonkeyPatch, offset: float, fixed: float | None = None) -> Iterator[None]:
    """good-redis reads datetime.datetime.now(): shift it by ``offset`` seconds in its module
    (or, with ``fixed``, stop it at that unix time)."""

    real = datetime.datetime

    class Skewed(real):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Any:
            if fixed is not None:
                return real.fromtimestamp(fixed, tz)
            return real.now(tz) + datetime.timedelta(seconds=offset)

    shifted = types.SimpleNamespace(datetime=Skewed, timedelta=datetime.timedelta, UTC=UTC)
    with monkeypatch.context() as patch:
        patch.setattr(importlib.import_module("good_redis._client"), "datetime", shifted)
        yield


def test_pspull_expiry_and_psexpire_use_the_server_clock_when_client_clocks_differ(
        streams: Streams, peer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server_now = int(streams.client.time()[0])
    streams.psaddmany("q", [("a", "1", 1), ("b", "2", 2)])
    with skewed_clock(monkeypatch, -7200):  # a client two hours behind pulls with a one-minute block
        streams.pspull("q", 2, expire_at=datetime.timedelta(minutes=1))
    expiries = [score for _, score in streams.client.zrange("q:exp", 0, -1, withscores=True)]
    assert all(server_now + 59 <= score <= server_now + 62 for score in expiries), (server_now, expiries)
    with skewed_clock(monkeypatch, 7200):  # a client two hours ahead expires: nothing is due yet
        assert streams.psexpire() == 0
    assert streams.client.zcard("q:exp") == 2
    # good-redis takes both times from its client: the early client's block ended two hours ago
    peer.psaddmany("q", [("a", "1", 1), ("b", "2", 2)])
    with skewed_datetime(monkeypatch, -7200):
        peer.pspull("q", 2, expire_at=datetime.timedelta(minutes=1))
    with skewed_datetime(monkeypatch, 7200):
        peer.psexpire()
    assert peer.zcard("q:exp") == 0


def test_streams_with_an_explicit_clock_expire_by_that_clock_alone(redis_client: Any) -> None:
    now = [1_000_000.0]
    streams = Streams(redis_client, clock=lambda: now[0])
    streams.psaddmany("q", [("a", "1", 1), ("b", "2", 2)])
    streams.pspull("q", 2, expire_at=datetime.timedelta(seconds=30))
    assert redis_client.zrange("q:exp", 0, -1, withscores=True) == [(b"a", 1_000_030.0), (b"b", 1_000_030.0)]
    now[0] = 1_000_029.9
    assert streams.psexpire() == 0
    now[0] = 1_000_030.0
    assert streams.psexpire() == 2
    assert streams.psadd("q", "a", "again") == 1


# --- bad input: a clear error and nothing written --------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[Streams], Any], type[Exception]]] = [
    ("empty name", lambda s: s.psadd("", "k", "v"), ValueError),
    ("name not str", lambda s: s.psadd(b"q", "k", "v"), TypeError),
    ("empty key", lambda s: s.psadd("q", "", "v"), ValueError),
    ("key None", lambda s: s.psadd("q", None, "v"), TypeError),
    ("score str", lambda s: s.psadd("q", "k", "v", "3"), TypeError),
    ("score bool", lambda s: s.psadd("q", "k", "v", True), TypeError),
    ("score nan", lambda s: s.psadd("q", "k", "v", float("nan")), ValueError),
    ("value dict", lambda s: s.psadd("q", "k", {"a": 1}), TypeError),
    ("value None", lambda s: s.psadd("q", "k", None), TypeError),
    ("many: one bad score", lambda s: s.psaddmany("q", [("a", "v", 1), ("b", "v", "x")]), TypeError),
    ("many: pair", lambda s: s.psaddmany("q", [("a", "v", 1), ("b", "v")]), TypeError),
    ("many: empty key", lambda s: s.psaddmany("q", [("a", "v", 1), ("", "v", 1)], readd=True), ValueError),
    ("count 0", lambda s: s.pspull("q", 0), ValueError),
    ("count float", lambda s: s.pspull("q", 1.5), TypeError),
    ("naive datetime", lambda s: s.pspull("q", expire_at=datetime.datetime.now()), ValueError),
    ("expire seconds", lambda s: s.pspull("q", expire_at=60), TypeError),
    ("increment str", lambda s: s.psincrement("q", "a", "1"), TypeError),
    ("threshold None", lambda s: s.psdeletebelowthreshold("q", None), TypeError),
    ("decrement inf", lambda s: s.psdecrement_all("q", float("inf")), ValueError),
    ("psget empty key", lambda s: s.psget("q", b""), ValueError),
    ("psdelete empty", lambda s: s.psdelete(""), ValueError),
    ("key bytes not utf-8", lambda s: s.psadd("q", b"\xff\xfe", "v"), ValueError),
    ("many: key bytes not utf-8", lambda s: s.psaddmany("q", [("a", "v", 1), (b"ok\xc3", "v", 1)]), ValueError),
    ("score beyond a double", lambda s: s.psadd("q", "k", "v", 10**400), ValueError),
    ("pskeys other keyword", lambda s: s.pskeys("q", start=1), TypeError),
    ("psremove a key twice", lambda s: s.psremove("q", ["a", "a"]), ValueError),
    ("psremove an empty key", lambda s: s.psremove("q", ["a", ""]), ValueError),
    ("psremove a key None", lambda s: s.psremove("q", ["a", None]), TypeError),
]


@pytest.mark.parametrize(("call", "error"), [(call, error) for _, call, error in BAD_CALLS],
                         ids=[what for what, _, _ in BAD_CALLS])
def test_bad_input_raises_and_writes_nothing(streams: Streams, call: Callable[[Streams], Any],
                                             error: type[Exception]) -> None:
    streams.psaddmany("q", [("a", "1", 1), ("b", "2", 2)])
    streams.pspull("q", 1, expire_at=FUTURE)
    before = snapshot(streams.client)
    with pytest.raises(error):
        call(streams)
    assert snapshot(streams.client) == before


def test_bad_constructor_arguments_raise(redis_client: Any) -> None:
    with pytest.raises(TypeError, match="serializer"):
        Streams(redis_client, serializer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        Streams(redis_client, clock=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash tag"):
        Streams(redis_client, cluster=True).psadd("}q", "k", "v")


# --- values, serializers, errors -------------------------------------------------------------------


def test_values_round_trip_through_a_serializer(redis_client: Any) -> None:
    streams = Streams(redis_client, serializer=json)
    assert streams.psadd("q", "a", {"n": 1, "tags": ["x"]}, 2) == 2
    streams.psadd("q", "b", [1, 2], 1)
    assert streams.psget("q", "a") == {"n": 1, "tags": ["x"]}
    assert streams.psget("q", "missing") is None
    assert streams.psvalues("q") == {"a": {"n": 1, "tags": ["x"]}, "b": [1, 2]}
    assert streams.pspull("q", 2) == {"a": {"n": 1, "tags": ["x"]}, "b": [1, 2]}


def test_empty_psaddmany_sends_nothing(streams: Streams, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingClient(streams.client, monkeypatch)
    assert streams.psaddmany("q", []) == []
    assert counter.calls == []


def test_unreachable_server_raises_backend_unavailable() -> None:
    from tests.servers import free_port

    streams = Streams(redis.Redis(port=free_port(), socket_connect_timeout=1))
    with pytest.raises(BackendUnavailable):
        streams.psadd("q", "a", "v")


# --- round trips and scripts -----------------------------------------------------------------------


def test_psexpire_and_psdeletebelowthreshold_cost_one_round_trip_per_batch_of_matches(
        streams: Streams, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        streams.psaddmany(f"s{i}", [(f"k{j}", "v", j) for j in range(80)])
        streams.pspull(f"s{i}", 20, expire_at=PAST)
    streams.psaddmany("big", [(f"k{j}", "v", j) for j in range(2500)])
    streams.psexpire()  # loads the script once; from here on every call is EVALSHA
    for i in range(50):
        streams.pspull(f"s{i}", 20, expire_at=PAST)
    counter = CountingClient(streams.client, monkeypatch)
    assert streams.psexpire() == commands.BATCH == 50 * 20
    assert counter.calls == ["SMEMBERS", "EVALSHA"]
    for i in range(50):
        streams.pspull(f"s{i}", 40, expire_at=PAST)
    counter.calls.clear()
    assert streams.psexpire() == 2000
    assert counter.calls == ["SMEMBERS", "EVALSHA", "EVALSHA"]
    counter.calls.clear()
    assert len(streams.psdeletebelowthreshold("big", 999, gate=True)) == 1000
    assert counter.calls == ["EVALSHA"]
    counter.calls.clear()
    assert streams.psdeletebelowthreshold("big", 2499) == [f"k{j}".encode() for j in range(1000, 2500)]
    assert counter.calls == ["EVALSHA", "EVALSHA"]
    assert streams.pslen("big") == 0 and streams.client.scard("big:exc") == 1000


def test_psexpire_over_more_streams_than_one_script_takes(streams: Streams,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    count = commands.EXPIRE_CHUNK + 20
    for i in range(count):
        streams.psaddmany(f"s{i}", [("a", "v", 1), ("b", "v", 2)])
        streams.pspull(f"s{i}", 1, expire_at=PAST)
    counter = CountingClient(streams.client, monkeypatch)
    assert streams.psexpire() == count
    assert counter.calls == ["SMEMBERS", "EVALSHA", "EVALSHA"]  # 1 + ceil(streams / EXPIRE_CHUNK)
    assert all(streams.pskeys(f"s{i}") == [b"a"] for i in range(count))


def test_psexpire_in_small_batches_removes_everything_good_redis_removes(
        streams: Streams, peer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "BATCH", 4)
    for name, size in (("a", 3), ("b", 4), ("c", 9), ("d", 0), ("e", 1)):
        both(streams, peer, lambda s, n=name, k=size: s.psaddmany(n, [(f"k{i}", "v", i) for i in range(k + 2)]))
        both(streams, peer, lambda s, n=name, k=size: k and s.pspull(n, k, expire_at=PAST))
        both(streams, peer, lambda s, n=name: s.pspull(n, 1, expire_at=FUTURE))
    assert streams.psexpire() == 17
    peer.psexpire()
    assert snapshot(streams.client) == snapshot(peer)


def test_scripts_are_loaded_once_and_called_by_sha(streams: Streams) -> None:
    client = streams.client
    client.script_flush()  # a fresh server: earlier tests loaded the scripts already
    client.config_resetstat()
    for i in range(20):
        streams.psadd("q", f"k{i}", "v", i)
        streams.pspull("q", 1)
    client.script_flush()  # a restarted server forgot them: reloaded once, on NOSCRIPT
    for i in range(5):
        streams.psadd("q", f"x{i}", "v", i)
    stats = client.info("commandstats")
    assert stats["cmdstat_script|load"]["calls"] == 3  # psadd, pspull, psadd after the flush
    assert stats["cmdstat_evalsha"]["calls"] == 20 + 20 + 5 + 3  # + each that met NOSCRIPT
    assert stats["cmdstat_evalsha"]["failed_calls"] == 3
    assert "cmdstat_eval" not in stats


def test_every_lua_file_is_a_registered_script_with_a_header() -> None:
    from importlib import resources

    files = {path.name for path in resources.files("django_fence.streams").joinpath("lua").iterdir()}
    assert files == {f"{name}.lua" for name in scripts.NAMES}
    for name in scripts.NAMES:
        header = scripts.source(name).split("\n\n", 1)[0]
        assert "KEYS[1]" in header and "ARGV[1]" in header and "Returns" in header, name
    with pytest.raises(ValueError):
        scripts.source("../etc/passwd")


def test_streams_run_on_fakeredis_for_unit_tests() -> None:
    import fakeredis

    streams = Streams(fakeredis.FakeRedis())
    assert streams.psaddmany("q", [("a", "1", 2), ("b", "2", 5)]) == [2, 5]
    assert streams.pspull("q", 1, expire_at=PAST) == {"b": b"2"}
    assert streams.psexpire() == 1
    assert streams.psnames() == {b"q"}
    assert streams.pskeys("q") == [b"a"]


def test_pspull_relative_expiry_is_counted_from_the_server_clock_not_the_clients(
        streams: Streams, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose clock is a day ahead still blocks for 100 s from the server's now."""
    server_before = int(streams.client.time()[0])
    streams.psadd("q", "a", "v")
    with skewed_clock(monkeypatch, 86_400):
        streams.pspull("q", 1, expire_at=datetime.timedelta(seconds=100))
    server_after = int(streams.client.time()[0])
    assert server_before + 100 <= streams.client.zscore("q:exp", "a") <= server_after + 100


# --- one bad item or key never costs the others ----------------------------------------------------


def test_pspull_returns_a_value_that_fails_to_deserialize_raw_and_loses_nothing_else(
        redis_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    streams = Streams(redis_client, serializer=json)
    streams.psaddmany("q", [("a", {"n": 1}, 3), ("c", [2], 1)])
    redis_client.hset("q:t", "b", b"{not json")
    redis_client.zadd("q:s", {"b": 2})
    with caplog.at_level(logging.ERROR, logger="django_fence.streams.commands"):
        assert streams.pspull("q", 3) == {"a": {"n": 1}, "b": b"{not json", "c": [2]}
    assert [record.levelname for record in caplog.records] == ["ERROR"]
    assert "'b' could not be deserialized" in caplog.text
    assert streams.pslen("q") == 0 and redis_client.zcard("q:exp") == 3


def test_psvalues_returns_a_value_that_fails_to_deserialize_raw_with_a_warning(
        redis_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    streams = Streams(redis_client, serializer=json)
    streams.psadd("q", "a", {"n": 1})
    redis_client.hset("q:t", "b", b"\xff")
    with caplog.at_level(logging.WARNING, logger="django_fence.streams.commands"):
        assert streams.psvalues("q") == {"a": {"n": 1}, "b": b"\xff"}
    assert [record.levelname for record in caplog.records] == ["WARNING"]


def test_pspull_returns_a_key_that_is_not_utf8_as_bytes_and_loses_nothing(redis_client: Any) -> None:
    streams = Streams(redis_client)
    streams.psaddmany("q", [("a", "1", 3), ("c", "3", 1)])
    redis_client.hset("q:t", b"\xffb", "2")  # written by another client: ours refuses such keys
    redis_client.zadd("q:s", {b"\xffb": 2})
    assert streams.psvalues("q") == {"a": b"1", b"\xffb": b"2", "c": b"3"}
    assert streams.pspull("q", 3) == {"a": b"1", b"\xffb": b"2", "c": b"3"}
    assert streams.pslen("q") == 0


# --- keys of another type: nothing half done -------------------------------------------------------

WRONG_TYPES: list[tuple[str, str, Callable[[Streams], Any]]] = [
    ("psadd, exp a string", "q:exp", lambda s: s.psadd("q", "a", "v", readd=True)),
    ("psadd, registry a string", ":ps:keys", lambda s: s.psadd("q", "a", "v")),
    ("psaddmany, values a string", "q:t", lambda s: s.psaddmany("q", [("a", "v", 1), ("z", "v", 1)], readd=True)),
    ("psadd with_decay, decay a string", ":ps:decay", lambda s: s.psadd("q", "z", "v", with_decay=True)),
    ("pspull, values a string", "q:t", lambda s: s.pspull("q", 2)),
    ("pspull, exc a string", "q:exc", lambda s: s.pspull("q", 2, gate=True)),
    ("psdeletebelowthreshold, exc a string", "q:exc", lambda s: s.psdeletebelowthreshold("q", 5, gate=True)),
    ("psdecrement_all, s a string", "q:s", lambda s: s.psdecrement_all("q", 1)),
    ("psdelete, registry a string", ":ps:keys", lambda s: s.psdelete("q")),
    ("psremove, t a string", "q:t", lambda s: s.psremove("q", ["a"])),
    ("psremove, exp a string", "q:exp", lambda s: s.psremove("q", ["a"])),
]


@pytest.mark.parametrize(("key", "call"), [(key, call) for _, key, call in WRONG_TYPES],
                         ids=[what for what, _, _ in WRONG_TYPES])
def test_a_key_of_another_type_fails_the_script_before_any_write(streams: Streams, key: str,
                                                                  call: Callable[[Streams], Any]) -> None:
    streams.psaddmany("q", [("a", "1", 1), ("b", "2", 2)])
    streams.pspull("q", 1, expire_at=FUTURE)
    streams.client.delete(key)
    streams.client.set(key, "not what it should be")
    before = snapshot(streams.client)
    with pytest.raises(redis.exceptions.ResponseError, match=f"WRONGTYPE {key} holds a string"):
        call(streams)
    assert snapshot(streams.client) == before


def test_psexpire_skips_a_broken_stream_logs_it_and_expires_the_others(
        streams: Streams, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a", "broken", "c"):
        streams.psaddmany(name, [("x", "1", 1), ("y", "2", 2)])
        streams.pspull(name, 2, expire_at=PAST)
    streams.client.set("broken:exp", "oops")
    with caplog.at_level(logging.ERROR, logger="django_fence.streams.commands"):
        assert streams.psexpire() == 4
    assert "stream 'broken' has a key of another type" in caplog.text
    assert streams.client.get("broken:exp") == b"oops"
    assert streams.client.zcard("a:exp") == streams.client.zcard("c:exp") == 0


# --- good-redis's remaining calls and results ------------------------------------------------------


def test_pskeys_with_scores_and_descending_like_good_redis(streams: Streams, peer: Any) -> None:
    for client in (streams, peer):
        client.psaddmany("q", [("a", "1", 3), ("b", "2", 1.5), ("c", "3", 2)])  # good-redis returns 1 for 1.5
    assert both(streams, peer, lambda s: s.pskeys("q", withscores=True)) == [(b"b", 1.5), (b"c", 2.0), (b"a", 3.0)]
    assert both(streams, peer, lambda s: s.pskeys("q", desc=True)) == [b"a", b"c", b"b"]
    assert both(streams, peer, lambda s: s.pskeys("q", withscores=True, desc=True))[0] == (b"a", 3.0)
    with pytest.raises(TypeError):
        streams.pskeys("q", start=1)  # type: ignore[call-arg]  # only zrange's withscores and desc


def test_number_arguments_beyond_a_double_are_a_value_error(streams: Streams) -> None:
    for call in (lambda: streams.psadd("q", "a", "v", 10**400), lambda: streams.psdecrement_all("q", -(10**400)),
                 lambda: streams.psincrement("q", "a", 10**400)):
        with pytest.raises(ValueError, match="finite"):
            call()
    assert snapshot(streams.client) == {}
    assert streams.psadd("q", "a", "v", 10**300) == float(10**300)  # within range: accepted, as a double


def test_a_cluster_client_with_cluster_false_is_refused(redis_cluster_client: Any,
                                                        redis_cluster_nodes: list[tuple[str, int]]) -> None:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    with pytest.raises(ValueError, match="cluster=False"):
        Streams(redis_cluster_client, cluster=False)
    assert Streams(redis_cluster_client, cluster=True).commands.cluster

    async def build() -> None:
        client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster_nodes])
        try:
            with pytest.raises(ValueError, match="cluster=False"):
                AsyncStreams(client, cluster=False)
        finally:
            await client.aclose()

    asyncio.run(build())


def test_the_built_wheel_carries_every_script_and_they_load_from_it(tmp_path: Any) -> None:
    """STYLE.md §6: the scripts are read with importlib.resources from the installed package, here a
    wheel imported straight from its zip file, in a fresh interpreter that cannot see this checkout."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"
    shutil.copytree(root / "django_fence", source / "django_fence", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.rst"):
        shutil.copy(root / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(source)], timeout=50, capture_output=True, text=True)
    if built.returncode and "No matching distribution" in built.stderr:  # no index for setuptools/wheel here
        pytest.skip("pip cannot fetch the build requirements: " + built.stderr.strip().splitlines()[-1])
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("django_fence-*.whl")
    read = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import django_fence.streams.scripts as s; "
        "assert s.__file__.startswith(sys.argv[1]), s.__file__; "
        "print(json.dumps({n: s.source(n) for n in s.NAMES}))"
    )
    done = subprocess.run([sys.executable, "-I", "-c", read, str(wheel)], check=True, timeout=30,
                          capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(done.stdout) == {name: scripts.source(name) for name in scripts.NAMES}


def test_psremove_removes_the_chosen_items_value_priority_and_pull_mark(streams: Streams) -> None:
    streams.psaddmany("q", [("a", "1", 1), ("b", "2", 2), ("c", "3", 3), ("d", "4", 4)])
    streams.pspull("q", 1, purge=False, expire_at=FUTURE)  # "d": priority -1, pull mark
    streams.client.sadd("q:exc", "b")
    assert streams.psremove("q", ["d", "b", "zz"]) == 2
    assert streams.pskeys("q") == [b"a", b"c"]
    assert set(streams.psvalues("q")) == {"a", "c"}
    assert streams.client.zrange("q:exp", 0, -1) == []
    assert streams.client.smembers("q:exc") == {b"b"}  # the gate is not the item's: left as it is
    assert streams.psremove("q", []) == 0


def test_async_psremove(redis_url: str, redis_client: Any) -> None:
    import redis.asyncio

    Streams(redis_client).psaddmany("q", [("a", "1", 1), ("b", "2", 2)])

    async def remove() -> int:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await AsyncStreams(client).psremove("q", ["a"])
        finally:
            await client.aclose()

    assert asyncio.run(remove()) == 1
    assert Streams(redis_client).pskeys("q") == [b"b"]
