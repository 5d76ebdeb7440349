"""Child processes for the streams and sets concurrency tests (spawned: fresh interpreters, own connections)."""

from __future__ import annotations

import time
import traceback
from typing import Any

from tests.workers import spawn_together


def run_children(calls: list[tuple[str, tuple[Any, ...]]], timeout: float = 90) -> list[Any]:
    """Run each (function name in this module, args) in its own spawned process; all start together.

    Returns the results in the order the children finished.
    """
    reports = spawn_together([(_child, (target, args)) for target, args in calls], timeout)
    return [report["result"] for report in reports]


def _child(target: str, args: tuple[Any, ...], barrier: Any, results: Any, kwargs: dict[str, Any]) -> None:
    try:
        results.put({"result": globals()[target](barrier, *args)})
    except BaseException:
        results.put({"crash": traceback.format_exc()})


def _client(where: Any) -> Any:
    """A redis URL gives a Redis client; a list of (host, port) a RedisCluster."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    if isinstance(where, str):
        return redis.Redis.from_url(where)
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in where])


def pull_stream(barrier: Any, where: Any, name: str, count: int) -> list[str]:
    """pspull(purge=True) until the stream is empty; the keys this process received."""
    from django_fence.streams import Streams

    streams = Streams(_client(where))
    streams.pslen(name)  # connect before the start
    received: list[str] = []
    barrier.wait(30)
    while pulled := streams.pspull(name, count):
        received.extend(pulled)
    return received


def produce_to_set(barrier: Any, url: str, kind: str, name: str, items: list[str]) -> list[str]:
    """Add ``items`` (scores spread over the past, so ScheduledSet sees them due), then say so."""
    from django_fence.streams import sets

    target = getattr(sets, kind)(_client(url), name)
    barrier.wait(30)
    for position, item in enumerate(items):
        target.add(item, 1_000 + position % 97)
    target.redis.incr(f"{name}:producers-done")
    return []


def consume_from_set(barrier: Any, url: str, kind: str, name: str, producers: int) -> list[str]:
    """take() and pop() in turn until every producer is done and the set is empty."""
    from django_fence.streams import sets

    target = getattr(sets, kind)(_client(url), name)
    received: list[str] = []
    barrier.wait(30)
    turn = 0
    while True:
        done = int(target.redis.get(f"{name}:producers-done") or 0) == producers
        turn += 1
        if turn % 2:
            taken = target.take(5)
        else:
            try:
                taken = [target.pop()]
            except KeyError:
                taken = []
        received.extend(taken)
        if not taken:
            if done:
                return received
            time.sleep(0.001)  # the producers are behind: do not spin on the server
