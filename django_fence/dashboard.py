"""What the admin reads from Redis for its stream pages; no views here (see ``admin.py``).

``DJANGO_FENCE["STREAMS_REDIS"]`` names the Redis servers whose streams the admin shows,
``{label: URL or CACHES alias}``. A stream is listed from its server's registry
(``psnames``) with its length, top item, excluded and expiring counts, all in one pipeline
per server. A stream page reads one page of items, highest priority first, with two round
trips whatever the stream's size (ZREVRANGE, then the values and marks of those items);
a key-prefix search walks the priorities with ZSCAN and keeps the matches.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import heapq
import os
import threading
from collections.abc import Iterator
from typing import Any, overload

import redis
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from redis.cluster import RedisCluster

from .conf import fence_settings
from .counters import redis_client_of
from .streams import Streams
from .streams.commands import scored
from .streams.keys import REGISTRY, StreamKeys, stream_keys
from .streams.sync import SyncClient

#: The most streams a server's panel lists (the registry is read whole; the rows are cut here).
MAX_LISTED = 200
#: The most matches a key-prefix search keeps.
MAX_MATCHES = 10_000
SCAN_COUNT = 5000  # elements ZSCAN looks at per call: 20 round trips for 100,000 items, a millisecond each
SOCKET_TIMEOUT = 2.0  # a server that accepts and never answers costs the page two seconds, not a worker

#: URL schemes naming a Redis Cluster by one of its nodes, and the scheme redis-py is given.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: Every scheme STREAMS_REDIS takes (check E006).
URL_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)

_clients: dict[tuple[int, str], SyncClient] = {}
_clients_lock = threading.Lock()


def display(raw: Any) -> str:
    """A key or value as text for the page: UTF-8 decoded, undecodable bytes shown as escapes."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="backslashreplace")
    return str(raw)


@dataclasses.dataclass(frozen=True)
class Connection:
    """One entry of STREAMS_REDIS: a label and the Redis URL or cache alias it names."""

    label: str
    target: str

    @property
    def is_url(self) -> bool:
        return "://" in self.target

    def client(self) -> SyncClient:
        """The redis-py client: one per URL and process, or the cache alias's own.

        ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS) names a Redis Cluster by one of
        its nodes (``RedisCluster``, database 0 only).
        """
        if self.is_url:
            key = (os.getpid(), self.target)
            with _clients_lock:
                if key in _clients:
                    return _clients[key]
            client: SyncClient  # built outside the lock: a cluster client connects as it is built
            if (scheme := self.target.split("://", 1)[0]) in CLUSTER_SCHEMES:
                url = CLUSTER_SCHEMES[scheme] + "://" + self.target.split("://", 1)[1]
                client = RedisCluster.from_url(url, socket_timeout=SOCKET_TIMEOUT,
                                               socket_connect_timeout=SOCKET_TIMEOUT)
            else:
                client = redis.Redis.from_url(self.target, socket_timeout=SOCKET_TIMEOUT,
                                              socket_connect_timeout=SOCKET_TIMEOUT)
            with _clients_lock:
                return _clients.setdefault(key, client)
        cache: Any = caches[self.target]
        inner = getattr(cache, "inner", cache)  # a FencedCache: the cache it wraps
        own: SyncClient | None = redis_client_of(inner)
        if own is None:
            raise ImproperlyConfigured(f"DJANGO_FENCE['STREAMS_REDIS'][{self.label!r}] names the cache "
                                       f"{self.target!r}, which is not a Redis cache.")
        return own

    def streams(self) -> Streams:
        return Streams(self.client())


def connections() -> dict[str, Connection]:
    """The configured stream servers, by label, in the order of the setting."""
    configured = fence_settings().STREAMS_REDIS
    return {str(label): Connection(str(label), str(target)) for label, target in configured.items()}


@dataclasses.dataclass(frozen=True)
class StreamSummary:
    """One stream's row on the dashboard; ``problem`` says why a registered name has no page."""

    name: str
    length: int | None = None
    excluded: int | None = None
    expiring: int | None = None
    top_key: str | None = None
    top_score: float | None = None
    problem: str | None = None


def name_problem(raw: Any, cluster: bool = False) -> str | None:
    """Why a name (or an item key) written by any client cannot be named through Streams, or None."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8: written by another client; Streams cannot name it"
    try:
        stream_keys(raw, cluster)
    except ValueError as exc:
        return f"{exc}: written by another client; Streams cannot name it"
    return None


def stream_summaries(connection: Connection) -> tuple[list[StreamSummary], int]:
    """The first MAX_LISTED streams of the server's registry, by name, and how many there are."""
    streams = connection.streams()
    registered = sorted(streams.psnames(), key=lambda raw: display(raw))
    listed = registered[:MAX_LISTED]
    cluster = streams.commands.cluster
    readable = [display(raw) for raw in listed if name_problem(raw, cluster) is None]
    pipe = streams.client.pipeline(transaction=False)
    for name in readable:
        keys = StreamKeys(name, cluster)
        pipe.zcard(keys.priorities)
        pipe.scard(keys.excluded)
        pipe.zcard(keys.expiring)
        pipe.zrevrange(keys.priorities, 0, 0, withscores=True)
    replies = iter(pipe.execute() if readable else [])
    rows = []
    for raw in listed:
        problem = name_problem(raw, cluster)
        if problem is not None:
            rows.append(StreamSummary(display(raw), problem=problem))
            continue
        length, excluded, expiring, top = (next(replies) for _ in range(4))
        first = scored(top)[:1]
        rows.append(StreamSummary(display(raw), int(length), int(excluded), int(expiring),
                                  display(first[0][0]) if first else None, first[0][1] if first else None))
    return rows, len(registered)


@dataclasses.dataclass(frozen=True)
class Item:
    """One item of a stream page."""

    key: str
    raw_key: bytes  # what the item's forms send back (base64), so any key round-trips
    score: float
    value: str | None  # None: a priority without a value (psincrement of an unknown key)
    excluded: bool
    expires_at: datetime.datetime | None  # pulled with purge=False: blocked until then

    @property
    def token(self) -> str:
        """The key as the page's forms send it: base64 of its bytes (a line break or any byte survives)."""
        return encode_key(self.raw_key)

    @property
    def actionable(self) -> bool:
        """Whether Streams can name the key (UTF-8; a key written otherwise by another client cannot)."""
        return name_problem(self.raw_key) is None


def encode_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_key(token: str) -> str:
    """A key sent back by a form (see ``Item.token``); ValueError if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if encode_key(raw) != token:  # the decoder skips characters that are not base64: a forged token
            raise ValueError(token)
        return raw.decode("utf-8")
    except (ValueError, UnicodeError):
        raise ValueError(f"{token[:40]!r} is not an item key of this page") from None


class StreamItems:
    """A stream's items, highest priority first, read a page at a time: ``Paginator(StreamItems(...), 100)``.

    ``prefix`` keeps the items whose key starts with it (ZSCAN, at most MAX_MATCHES of them).
    """

    def __init__(self, client: SyncClient, keys: StreamKeys, prefix: str = "") -> None:
        self.client = client
        self.keys = keys
        self.prefix = prefix
        self._matches: list[tuple[Any, float]] | None = None
        self.matched = 0  # every match of the prefix search, kept or not
        self.truncated = False

    def _search(self) -> list[tuple[Any, float]]:
        """The matches of highest priority (at most MAX_MATCHES), in ZREVRANGE's order; ``matched`` counts all."""
        if self._matches is None:
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
            best: list[tuple[float, Any]] = []  # a min-heap: the lowest of the best on top
            for member, score in self.client.zscan_iter(self.keys.priorities, match=pattern, count=SCAN_COUNT):
                self.matched += 1
                entry = (float(score), member)
                if len(best) < MAX_MATCHES:
                    heapq.heappush(best, entry)
                elif entry > best[0]:
                    heapq.heapreplace(best, entry)
            self.truncated = self.matched > len(best)
            self._matches = [(member, score) for score, member in sorted(best, reverse=True)]
        return self._matches

    def count(self) -> int:
        if self.prefix:
            return len(self._search())
        return int(self.client.zcard(self.keys.priorities))

    def __len__(self) -> int:
        return self.count()

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, int):
            found = self[index:index + 1]
            if not found:
                raise IndexError(index)
            return found[0]
        start, stop = index.start or 0, index.stop
        if self.prefix:
            pairs = self._search()[start:stop]
        elif stop is None or stop > start:
            pairs = scored(self.client.zrevrange(self.keys.priorities, start, -1 if stop is None else stop - 1,
                                                 withscores=True))
        else:
            pairs = []
        return self._items(pairs)

    def __iter__(self) -> Iterator[Item]:
        return iter(self[0:None])

    def _items(self, pairs: list[tuple[Any, float]]) -> list[Item]:
        if not pairs:
            return []
        members = [member for member, _ in pairs]
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.values, members)
        pipe.smismember(self.keys.excluded, members)
        pipe.zmscore(self.keys.expiring, members)
        values, excluded, expiries = pipe.execute()
        return [
            Item(display(member), member if isinstance(member, bytes) else str(member).encode(), score,
                 None if value is None else display(value), bool(out),
                 None if expiry is None else datetime.datetime.fromtimestamp(float(expiry), tz=datetime.UTC))
            for (member, score), value, out, expiry in zip(pairs, values, excluded, expiries, strict=True)
        ]


def stream_exists(streams: Streams, name: str) -> bool:
    """Whether the stream is registered or holds any key (a name never used is not a stream)."""
    keys = stream_keys(name, streams.commands.cluster)
    return bool(streams.client.sismember(REGISTRY, name)) or bool(streams.client.exists(*keys.all()))


CHART_WIDTH, CHART_HEIGHT = 160, 40


def chart(history: dict[str, Any]) -> dict[str, Any] | None:
    """SVG polyline points for a history (``metrics.history()`` of one alias); None without points.

    Hit ratio runs from 0 (bottom) to 1 (top); recomputes from 0 to the hour's busiest minute.
    Minutes without a lookup leave a gap in the hit-ratio line.
    """
    points = history.get("points") or []
    if not points:
        return None
    step = CHART_WIDTH / max(1, len(points) - 1)
    busiest = max(point["recomputes"] for point in points) or 1

    def y(fraction: float) -> str:
        return f"{CHART_HEIGHT - fraction * CHART_HEIGHT:.1f}"

    ratio_lines: list[list[str]] = [[]]
    for position, point in enumerate(points):
        if point["hit_ratio"] is None:
            if ratio_lines[-1]:
                ratio_lines.append([])
            continue
        ratio_lines[-1].append(f"{position * step:.1f},{y(point['hit_ratio'])}")
    return {
        "width": CHART_WIDTH, "height": CHART_HEIGHT,
        "hit_ratio": [" ".join(line) for line in ratio_lines if line],
        "recomputes": " ".join(f"{position * step:.1f},{y(point['recomputes'] / busiest)}"
                               for position, point in enumerate(points)),
        "busiest": busiest if any(point["recomputes"] for point in points) else 0,
        "minutes": len(points),
        "recomputed": sum(point["recomputes"] for point in points),
    }
