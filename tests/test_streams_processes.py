"""The "nothing is received twice" guarantees, across spawned processes, on a real redis-server and cluster."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from django_fence.streams import Streams
from tests.stream_workers import run_children

pytestmark = pytest.mark.timeout(120)


def test_pspull_gives_every_item_exactly_once_when_8_processes_pull_10000(redis_url: str, redis_client: Any) -> None:
    streams = Streams(redis_client)
    for start in range(0, 10_000, 1_000):
        streams.psaddmany("jobs", [(f"item-{i}", f"value-{i}", i % 113) for i in range(start, start + 1_000)])
    received = run_children([("pull_stream", (redis_url, "jobs", 7))] * 8)
    everything = [key for keys in received for key in keys]
    assert collections.Counter(everything).most_common(1)[0][1] == 1
    assert sorted(everything) == sorted(f"item-{i}" for i in range(10_000))
    assert sum(1 for keys in received if keys) > 1  # the processes really shared the work
    assert streams.pslen("jobs") == 0 and redis_client.hlen("jobs:t") == 0


def test_pspull_gives_every_item_exactly_once_on_a_cluster(redis_cluster_nodes: list[tuple[str, int]],
                                                           redis_cluster_client: Any) -> None:
    streams = Streams(redis_cluster_client)
    for name in ("jobs-a", "jobs-b"):
        streams.psaddmany(name, [(f"{name}-{i}", "v", i % 13) for i in range(1_500)])
    received = run_children([("pull_stream", (redis_cluster_nodes, name, 5)) for name in ("jobs-a", "jobs-b") * 2])
    everything = [key for keys in received for key in keys]
    assert sorted(everything) == sorted(f"{name}-{i}" for name in ("jobs-a", "jobs-b") for i in range(1_500))


@pytest.mark.parametrize("kind", ["SortedSet", "ScheduledSet"])
def test_set_consumers_never_receive_an_item_twice_with_producers_running(redis_url: str, redis_client: Any,
                                                                          kind: str) -> None:
    items = [f"item-{i}" for i in range(4_000)]
    producers = [("produce_to_set", (redis_url, kind, "work", items[i::4])) for i in range(4)]
    consumers = [("consume_from_set", (redis_url, kind, "work", 4))] * 4
    results = run_children(producers + consumers)
    everything = [item for taken in results for item in taken]
    assert collections.Counter(everything).most_common(1)[0][1] == 1
    assert sorted(everything) == sorted(items)
    assert sum(1 for taken in results if taken) > 1  # the consumers really shared the work
    assert redis_client.zcard("work") == 0
