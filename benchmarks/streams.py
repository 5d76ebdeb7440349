"""Prioritized-stream benchmark: django_fence.streams.Streams against good-redis, on one redis-server.

In one run, against one redis-server started here on a free loopback port, each row times the
same operation on good-redis's client and on ours, in alternating rounds that alternate who
goes first (so that noise on a small machine hits both alike), and reports the median
operations per second:

- psadd: N single adds to one stream.
- psaddmany(1000): calls of 1,000 items each.
- pspull(count=100): pulls of 100 from a stream of 100 x (pulls per round) items.
- psdeletebelowthreshold: one call per stream on 100 streams, each matching 1,000 items.
- psexpire: one call over 100 streams x 1,000 expired items.
- psdecrement_all: calls on one stream of 100,000 items.

Both libraries keep the same key layout, so every round's data is written by ours (not timed)
and then operated on by the library being timed. Run from the repository root::

    .venv/bin/python benchmarks/streams.py [--rounds 3] [--adds 5000] [--only psadd pspull ...]

good-redis 0.2.8 declares Python >= 3.12 but runs on 3.11; the Makefile installs it with
``--ignore-requires-python``. Without it, the rows compare ours with nothing and say so.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: only benchmarks/ is on the path, and tests/ is needed too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import format_table, running_servers, versions

PAST = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
PACKAGES = ["redis", "good-redis", "django-fence"]

Setup = Callable[[Any], Any]  # fills the database (with our client); returns the argument of the timed call
Timed = Callable[[Any, Any], int]  # (streams-like client, setup's result) -> operations performed


def fill(streams: Any, name: str, items: int, score: Callable[[int], float] = lambda i: i % 997) -> None:
    for start in range(0, items, 5_000):
        streams.psaddmany(name, [(f"k{i}", f"value-{i}", score(i)) for i in range(start, min(items, start + 5_000))])


def rows(args: argparse.Namespace) -> list[tuple[str, Setup, Timed]]:
    """(operation, setup, timed call) for each row."""

    def adds(client: Any, _: Any) -> int:
        for i in range(args.adds):
            client.psadd("stream", f"k{i}", "value", i % 17)
        return args.adds

    def add_many(client: Any, _: Any) -> int:
        for call in range(20):
            client.psaddmany("stream", [(f"k{call}-{i}", "value", i % 17) for i in range(1_000)])
        return 20

    def pulls(client: Any, _: Any) -> int:
        for _ in range(200):
            client.pspull("stream", 100, expire_at=datetime.timedelta(minutes=5))
        return 200

    def below(client: Any, _: Any) -> int:
        for stream in range(100):
            client.psdeletebelowthreshold(f"s{stream}", 999)
        return 100

    def expire(client: Any, _: Any) -> int:
        client.psexpire()
        return 1

    def decrement(client: Any, _: Any) -> int:
        for _ in range(5):
            client.psdecrement_all("big", 1)
        return 5

    def hundred_streams(streams: Any) -> None:
        for stream in range(100):
            fill(streams, f"s{stream}", 1_000)

    def hundred_streams_pulled(streams: Any) -> None:
        hundred_streams(streams)
        for stream in range(100):
            streams.pspull(f"s{stream}", 1_000, expire_at=PAST)

    return [
        (f"psadd (x{args.adds})", lambda streams: None, adds),
        ("psaddmany(1000) (x20)", lambda streams: None, add_many),
        ("pspull(count=100) (x200)", lambda streams: fill(streams, "stream", 20_000), pulls),
        ("psdeletebelowthreshold, 1,000 matches (x100)", hundred_streams, below),
        ("psexpire, 100 streams x 1,000 expired", hundred_streams_pulled, expire),
        ("psdecrement_all, 100,000 items (x5)", lambda streams: fill(streams, "big", 100_000), decrement),
    ]


def measure(client: Any, ours: Any, setup: Setup, timed: Timed) -> float:
    """Operations per second of one round: flush, set up with ours, time ``timed`` on ``client``."""
    ours.client.flushdb()
    prepared = setup(ours)
    started = time.perf_counter()
    operations = timed(client, prepared)
    return operations / (time.perf_counter() - started)


def rate(ops: float) -> str:
    """Operations per second, with enough digits for the slow rows (good-redis's psexpire)."""
    return f"{ops:,.1f}" if ops >= 10 else f"{ops:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row (median reported)")
    parser.add_argument("--adds", type=int, default=5_000, help="psadd calls per round")
    parser.add_argument("--only", nargs="*", default=[], help="run only the rows whose label contains a word")
    args = parser.parse_args()

    import redis

    from django_fence.streams import Streams

    try:
        import good_redis
    except ImportError as exc:
        good_redis = None
        print(f"good-redis is not importable ({exc}); its column stays empty", file=sys.stderr)

    with running_servers() as servers:
        ours = Streams(redis.Redis.from_url(servers.redis))
        peer = good_redis.Redis.from_url(servers.redis) if good_redis else None
        table = []
        for label, setup, timed in rows(args):
            if args.only and not any(word in label for word in args.only):
                continue
            theirs_ops: list[float] = []
            ours_ops: list[float] = []
            for round_number in range(args.rounds):  # who goes first alternates too
                order = [(ours_ops, ours), (theirs_ops, peer)]
                for results, client in order[::-1] if round_number % 2 == 0 else order:
                    if client is not None:
                        results.append(measure(client, ours, setup, timed))
            mine = statistics.median(ours_ops)
            if theirs_ops:
                theirs = statistics.median(theirs_ops)
                table.append([label, rate(theirs), rate(mine), f"{mine / theirs:.1f}x"])
            else:
                table.append([label, "-", rate(mine), "-"])
            print(f"  done: {label}", file=sys.stderr)
        ours.client.flushdb()
        print(versions(servers, PACKAGES))
        print(f"{args.rounds} alternating rounds per row, median operations per second\n")
        print(format_table(["operation", "good-redis ops/s", "ours ops/s", "speed-up"], table))


if __name__ == "__main__":
    main()
