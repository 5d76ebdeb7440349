"""Streams against a real redis-server, side by side with good-redis 0.2.8 on another database."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import json
import random
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from django_fence.exceptions import BackendUnavailable
from django_fence.streams import AsyncStreams, Streams, scripts
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


def test_random_operations_give_good_redis_results_and_data(streams: Streams, peer: Any) -> None:
    """300 seeded random operations on two streams: every result and the whole database match after each.

    Left out, each for a documented reason (see the module docstring of commands.py and the README):
    float scores in psadd (good-redis truncates the returned priority), pspull(purge=False) with
    count > 1 (good-redis can pop the same item twice), psdecrement_all's return value.
    """
    rng = random.Random(6)
    keys = [f"k{i}" for i in range(12)]

    def operation() -> tuple[str, Callable[[Any], Any]]:
        name, key = rng.choice(["s1", "s2"]), rng.choice(keys)
        score, readd = rng.randint(-3, 6), rng.random() < 0.2
        expire_at = rng.choice([PAST, FUTURE])
        count, gate = rng.randint(1, 4), rng.random() < 0.3
        items = [(rng.choice(keys), f"v{rng.randint(0, 99)}", rng.randint(-2, 5)) for _ in range(rng.randint(1, 4))]
        choices: list[tuple[str, Callable[[Any], Any]]] = [
            ("psadd", lambda s: s.psadd(name, key, f"v{score}", score, readd)),
            ("psadd", lambda s: s.psadd(name, key, f"w{score}", score)),
            ("pspull", lambda s: s.pspull(name, count, True, gate, expire_at)),
            ("pspull", lambda s: s.pspull(name, 1, False, False, expire_at)),
            ("psincrement", lambda s: s.psincrement(name, key, score)),
            ("psdeletebelowthreshold", lambda s: s.psdeletebelowthreshold(name, score - 2, gate)),
            ("psget", lambda s: s.psget(name, key)),
            ("pskeys", lambda s: s.pskeys(name)),
            ("psvalues", lambda s: s.psvalues(name)),
            ("pslen", lambda s: s.pslen(name)),
            ("psexpire", lambda s: [s.psexpire(), None][1]),
        ]
        if readd:  # good-redis's sync psaddmany puts its SREM and ZREM counts first: drop them
            choices.append(("psaddmany", lambda s: s.psaddmany(name, items, True)[-len(items):]))
        else:
            choices.append(("psaddmany", lambda s: s.psaddmany(name, items)))
        return rng.choice(choices)

    for step in range(300):
        what, call = operation()
        ours, theirs = call(streams), call(peer)
        assert ours == theirs, (step, what)
        assert snapshot(streams.client) == snapshot(peer), (step, what)


def test_async_streams_match_good_redis_async_client(redis_url: str, redis_client: Any) -> None:
    async def scenario() -> None:
        ours = AsyncStreams(redis.asyncio.Redis.from_url(redis_url))
        theirs = peer_client(redis_url, 1, good_redis.AsyncRedis, flush=False)
        await theirs.flushdb()
        try:
            for client in (ours, theirs):
                await client.psaddmany("q", [("a", "1", 3), ("b", "2", 5), ("c", "3", 1)])
                await client.psadd("r", "x", "y", 2)
            for call in (lambda s: s.pspull("q", 2, gate=True, expire_at=PAST), lambda s: s.pskeys("q"),
                         lambda s: s.psvalues("q"), lambda s: s.psdeletebelowthreshold("q", 2),
                         lambda s: s.psnames(), lambda s: s.psget("r", "x"), lambda s: s.pslen("r")):
                assert await call(ours) == await call(theirs)
            await ours.psexpire()
            await theirs.psexpire()
            await ours.psdelete("r")
            await theirs.psdelete("r")
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


# --- clocks (PITFALLS 23) --------------------------------------------------------------------------


@contextlib.contextmanager
def skewed_datetime(monkeypatch: pytest.MonkeyPatch, offset: float) -> Iterator[None]:
    """good-redis reads datetime.datetime.now(): shift it by ``offset`` seconds in its module."""

    real = datetime.datetime

    class Skewed(real):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Any:
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


def test_psexpire_and_psdeletebelowthreshold_cost_constant_round_trips(streams: Streams,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        streams.psaddmany(f"s{i}", [(f"k{j}", "v", j) for j in range(40)])
        streams.pspull(f"s{i}", 20, expire_at=PAST)
    streams.psaddmany("big", [(f"k{j}", "v", j) for j in range(2000)])
    streams.psexpire()  # loads the script once; from here on every call is EVALSHA
    for i in range(50):
        streams.pspull(f"s{i}", 20, expire_at=PAST)
    counter = CountingClient(streams.client, monkeypatch)
    assert streams.psexpire() == 50 * 20
    assert counter.calls == ["SMEMBERS", "EVALSHA"]
    counter.calls.clear()
    assert len(streams.psdeletebelowthreshold("big", 1499, gate=True)) == 1500
    assert counter.calls == ["EVALSHA"]
    assert streams.pslen("big") == 500


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


def test_time_in_scripts_follows_the_server_clock(streams: Streams) -> None:
    before = time.time()
    streams.psadd("q", "a", "v")
    streams.pspull("q", 1, expire_at=datetime.timedelta(seconds=100))
    expiry = streams.client.zscore("q:exp", "a")
    assert int(before) + 99 <= expiry <= time.time() + 100
