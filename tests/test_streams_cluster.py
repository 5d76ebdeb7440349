"""Streams and sets on a real 3-node Redis Cluster on loopback (PITFALLS 22: CROSSSLOT)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from django_fence.streams import AsyncStreams, ScheduledSet, SortedSet, Streams, TimeSortedSet
from django_fence.streams.keys import REGISTRY, stream_keys
from tests.streams_support import CountingClient

pytestmark = pytest.mark.timeout(60)
UTC = datetime.UTC
PAST = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
FUTURE = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
NAMES = ["alpha", "beta", "gamma", "delta", "with:colon", "brace}inside", "{tagged}"]


def node_of(client: Any, key: str) -> str:
    return str(client.get_node_from_key(key).name)


def test_cluster_mode_puts_a_stream_in_one_slot_where_good_redis_layout_scatters(
        redis_cluster_client: Any) -> None:
    for name in NAMES:
        assert len({key_slot(key.encode()) for key in stream_keys(name, cluster=True).all()}) == 1, name
    scattered = [name for name in NAMES if len({key_slot(k.encode()) for k in stream_keys(name, False).all()}) > 1]
    assert len(scattered) >= 5  # the plain layout would be CROSSSLOT for a script taking all four keys
    assert len({node_of(redis_cluster_client, stream_keys(n, True).values) for n in NAMES}) == 3


def test_a_script_that_builds_keys_inside_lua_fails_on_the_cluster(redis_cluster_client: Any) -> None:
    """What PITFALLS 22 is about: good-redis's psadd script names its keys inside Lua."""
    good_redis = pytest.importorskip("good_redis")
    script = redis_cluster_client.register_script(good_redis._client._script_psadd)
    with pytest.raises(redis.exceptions.ResponseError, match="non local key"):
        script(keys=["k"], args=["stream-of-another-slot", "v", 1])


def run_everything(streams: Any) -> list[Any]:
    """Every operation over streams spread across the nodes; the results, in order."""
    results: list[Any] = []
    for position, name in enumerate(NAMES):
        results.append(streams.psaddmany(name, [(f"k{i}", f"v{i}", i) for i in range(20)]))
        results.append(streams.psadd(name, "k1", "again", 2))
        results.append(streams.psincrement(name, "k2", 0.5))
        results.append(streams.pspull(name, 3, gate=position % 2 == 0, expire_at=PAST))
        results.append(streams.pspull(name, 2, purge=False, expire_at=FUTURE))
        results.append(streams.psadd(name, "k19", "blocked"))
        results.append(streams.psadd(name, "k19", "readded", 1, readd=True))
        results.append(sorted(streams.psdeletebelowthreshold(name, 3, gate=True)))
        results.append(streams.psdecrement_all(name, 1))
        results.append((streams.pslen(name), streams.pskeys(name), streams.psvalues(name), streams.psget(name, "k5")))
    results.append(streams.psexpire())
    results.append([streams.pskeys(name) for name in NAMES])
    results.append(streams.psdelete("beta"))
    results.append(sorted(streams.psnames()))
    return results


def test_every_operation_on_the_cluster_gives_the_single_server_results(redis_cluster_client: Any,
                                                                        redis_client: Any) -> None:
    on_cluster = run_everything(Streams(redis_cluster_client))
    assert on_cluster == run_everything(Streams(redis_client))
    assert redis_cluster_client.exists("{alpha}:t", "{alpha}:s", "{alpha}:exp") == 3
    assert redis_cluster_client.exists("{beta}:t", "{beta}:s", "{beta}:exc", "{beta}:exp") == 0


def test_cluster_mode_on_one_server_uses_hash_tag_names(redis_client: Any) -> None:
    streams = Streams(redis_client, cluster=True)
    streams.psadd("q", "a", "v")
    streams.pspull("q", 1, gate=True)
    assert sorted(redis_client.keys()) == [REGISTRY.encode(), b"{q}:exc", b"{q}:exp"]


def test_scripts_reload_on_noscript_from_every_cluster_node(redis_cluster_client: Any) -> None:
    streams = Streams(redis_cluster_client)
    for name in NAMES:
        streams.psadd(name, "a", "v")
    for node in redis_cluster_client.get_primaries():
        redis.Redis(host=node.host, port=node.port).script_flush()
    assert [streams.pspull(name) for name in NAMES] == [{"a": b"v"}] * len(NAMES)


def test_cluster_registers_before_adding_and_unregisters_after_deleting(redis_cluster_client: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    streams = Streams(redis_cluster_client)
    streams.psadd("warm-up", "a", "v")  # the scripts are loaded (NOSCRIPT, SCRIPT LOAD, EVALSHA) once
    streams.psdelete("warm-up")
    counter = CountingClient(redis_cluster_client, monkeypatch)
    streams.psadd("q", "a", "v")
    streams.psdelete("q")
    assert counter.calls == ["SADD", "EVALSHA", "EVALSHA", "SREM"]


def test_a_crash_between_the_cluster_steps_leaves_only_a_registered_empty_stream(redis_cluster_client: Any,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    streams = Streams(redis_cluster_client)
    send = redis_cluster_client.execute_command

    def crash_on(command: str) -> Any:
        def crashing(*args: Any, **options: Any) -> Any:
            if args[0] == command:
                raise redis.exceptions.ConnectionError("the process died here")
            return send(*args, **options)
        return crashing

    with monkeypatch.context() as patch:
        patch.setattr(redis_cluster_client, "execute_command", crash_on("EVALSHA"))  # after SADD
        with pytest.raises(Exception, match="died here"):
            streams.psadd("q", "a", "v")
    assert streams.psnames() == {b"q"} and streams.pslen("q") == 0
    assert streams.psexpire() == 0  # tolerated
    streams.psadd("r", "a", "v")
    streams.pspull("r", 1, expire_at=PAST)
    with monkeypatch.context() as patch:
        patch.setattr(redis_cluster_client, "execute_command", crash_on("SREM"))  # after the stream's DEL
        with pytest.raises(Exception, match="died here"):
            streams.psdelete("r")
    assert streams.psnames() == {b"q", b"r"}
    assert redis_cluster_client.exists("{r}:t", "{r}:s", "{r}:exc", "{r}:exp") == 0
    assert streams.psexpire() == 0
    assert streams.psadd("r", "a", "back") == 1  # the stream is usable again
    assert streams.psdelete("q") is False and streams.psnames() == {b"r"}


def test_async_streams_on_an_asyncio_cluster_client(redis_cluster_nodes: list[tuple[str, int]],
                                                    redis_cluster_client: Any) -> None:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    async def scenario() -> list[Any]:
        client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster_nodes])
        try:
            streams = AsyncStreams(client)
            out = []
            for name in NAMES:
                out.append(await streams.psaddmany(name, [("a", "1", 2), ("b", "2", 3)]))
                out.append(await streams.pspull(name, 1, expire_at=PAST))
            out.append(await streams.psexpire())
            out.append(sorted(await streams.psnames()))
            return out
        finally:
            await client.aclose()

    results = asyncio.run(scenario())
    assert results[-2:] == [len(NAMES), sorted(name.encode() for name in NAMES)]
    assert results[:2] == [[2, 3], {"b": b"2"}]


def test_sets_on_the_cluster(redis_cluster_client: Any) -> None:
    sorted_set = SortedSet(redis_cluster_client, "sorted")
    for item, score in (("b", 2), ("a", 1), ("c", 3)):
        sorted_set.add(item, score)
    assert (len(sorted_set), sorted_set.peek(), sorted_set.take(2), sorted_set.pop()) == (3, "a", ["a", "b"], "c")
    fifo = TimeSortedSet(redis_cluster_client, "fifo")
    for item in ("z", "y", "x"):
        fifo.add(item)
    assert fifo.take(3) == ["z", "y", "x"]
    scheduled = ScheduledSet(redis_cluster_client, "scheduled")
    scheduled.add("due", 1.0)
    scheduled.add("later", 4_000_000_000.0)
    assert (scheduled.available(), scheduled.peek(), scheduled.take(5), len(scheduled)) == (1, "due", ["due"], 1)
