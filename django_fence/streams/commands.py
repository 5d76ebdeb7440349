"""The prioritized-stream operations, written once, without I/O.

Each operation is a generator: it validates its arguments (raising before anything is
sent), yields the calls it needs (a :class:`Command` or a :class:`Script`), receives each
reply, and returns the decoded result. ``sync.Streams`` and ``aio.AsyncStreams`` only
drive these generators, one with blocking calls, one with ``await``; no logic is written
twice (DESIGN.md, "one algorithm, two thin drivers").

Every multi-step operation is one script, atomic. psexpire and psdeletebelowthreshold
remove at most ``BATCH`` items per script and call again while more remain: each batch
is atomic and one round trip, and no call holds the server for long (a script blocks
every other client of the server while it runs). pspull's ``count`` and psdecrement_all
are one script each: their cost grows with ``count`` and with the stream's size.

Every script first checks the TYPE of each of its KEYS and answers WRONGTYPE before any
write, so a key of another type never leaves half an operation done; psexpire instead
skips such a stream and names it (logged as an error), so one broken stream does not stop
the expiry of the others.

Time: by default the scripts read the Redis server's TIME (PITFALLS 23: one clock for
every client, however far their own clocks drift); ``clock=`` passes one explicit clock in
ARGV instead (tests). Calling TIME before a write needs Redis >= 5 (effects replication,
the default since 5.0); ZPOPMAX needs 5.0 too. We send EVALSHA ourselves rather than
through ``register_script`` (see ``scripts.py``): same protocol, less client time.

In cluster mode the registry ``:ps:keys`` hashes to another slot than a stream's keys, so
it is written in separate, idempotent steps, ordered so that every stream holding items
ends up registered:

- psadd/psaddmany register the name (SADD), then add the items; when the script reports
  that the stream had no keys before (it may have been deleted meanwhile), they register
  it again. A crash in between leaves a registered empty stream.
- psdelete deletes the stream's keys, unregisters (SREM), then checks (EXISTS) whether a
  concurrent psadd has written to it since, and if so registers it again.

A psadd that writes after psdelete's DEL either runs its script before psdelete's SREM
(then psdelete's EXISTS sees the items and registers again) or after it (then psadd's own
second SADD comes after the SREM): the stream stays registered either way. A registered
empty stream is a state good-redis reaches anyway (a stream drained by pspull and psexpire
stays registered until psdelete): psnames lists it and psexpire passes over it cheaply.
Without cluster mode the registry is one of the script's KEYS and all of this is atomic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from redis.crc import key_slot

from django_fence.streams import validation
from django_fence.streams.keys import REGISTRY, StreamKeys, stream_keys
from django_fence.streams.serializers import Serializer

logger = logging.getLogger(__name__)

T = TypeVar("T")
EXPIRE_CHUNK = 300  # streams per psexpire script without cluster mode: 900 KEYS
BATCH = 1000  # items per psexpire/psdeletebelowthreshold script: a few milliseconds of server time
DECAY_REGISTRY = ":ps:decay"  # good-redis's set of the names added with_decay


@dataclass(frozen=True)
class Command:
    """One Redis command, sent with ``execute_command(*args)``; the first key routes it on a cluster."""

    args: tuple[Any, ...]


@dataclass(frozen=True)
class Script:
    """One of ``lua/<name>.lua``, sent with EVALSHA (reloaded on NOSCRIPT)."""

    name: str
    keys: tuple[str, ...]
    args: tuple[Any, ...] = ()


Call = Command | Script
Operation = Generator[Call, Any, T]


def text(raw: Any) -> Any:
    """A key as good-redis returns it from pspull/psvalues: bytes decoded as UTF-8.

    A key that is not UTF-8 (written by another client: ``item_key`` refuses them) stays bytes.
    """
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            logger.warning("streams: item key %r is not UTF-8; returned as bytes", raw)
    return raw


def priority(raw: Any) -> int | float:
    """A priority from a script reply: an int when whole (good-redis's psadd returns ints)."""
    value = float(raw)
    return int(value) if value.is_integer() else value


def scored(reply: Any) -> list[tuple[Any, float]]:
    """(member, score) pairs from a WITHSCORES reply: flat (RESP2) or pairs already (RESP3, redis-py's zrange)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(member, float(score)) for member, score in reply]
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def now_arg(clock: Callable[[], float] | None) -> str:
    """The time a script compares with: '' makes the script read the server's TIME."""
    return "" if clock is None else validation.as_arg(float(clock()))


def commands_for(cluster_client: bool, cluster: bool | None, serializer: Serializer | None,
                 clock: Callable[[], float] | None) -> StreamCommands:
    """The commands of a Streams/AsyncStreams: cluster mode is the client's kind unless ``cluster`` says."""
    if cluster_client and cluster is False:
        raise ValueError("cluster=False needs a single-server client: a RedisCluster needs the hash-tag "
                         "key names of cluster mode (leave cluster unset)")
    return StreamCommands(cluster_client if cluster is None else cluster, serializer, clock)


class StreamCommands:
    """The operations of ``Streams``/``AsyncStreams``, as generators of calls.

    ``cluster`` puts each stream's keys in one hash slot and keeps the registry out of
    the scripts. ``serializer`` (``dumps``/``loads``) stores structured values. ``clock``
    (unix seconds) is the one clock of pspull's expiry and psexpire; None, the default,
    uses the Redis server's TIME inside the script, so clients whose clocks disagree still
    agree on what has expired.
    """

    def __init__(self, cluster: bool, serializer: Serializer | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning unix seconds, or None for the server's time")
        self.cluster = cluster
        self.serializer = validation.serializer(serializer)
        self.clock = clock

    def keys(self, name: object) -> StreamKeys:
        return stream_keys(name, self.cluster)

    def _load(self, raw: Any) -> Any:
        return raw if raw is None or self.serializer is None else self.serializer.loads(raw)

    def _items(self, name: str, pairs: Iterable[tuple[Any, Any]], removed: bool) -> dict[Any, Any]:
        """``{key: value}`` decoded item by item: one value that fails ``serializer.loads`` is
        returned raw (bytes) and logged, and never costs the other items.

        ``removed`` (pspull): the items are gone from Redis, so the failure is logged as an
        error (the caller holds the only copy); psvalues logs a warning.
        """
        items = {}
        for raw_key, raw_value in pairs:
            key = text(raw_key)
            try:
                items[key] = self._load(raw_value)
            except Exception:
                log = logger.error if removed else logger.warning
                log("stream %r: the value of %r could not be deserialized; returned as stored",
                    name, key, exc_info=True)
                items[key] = raw_value
        return items

    def _registry(self) -> tuple[str, ...]:
        """The registry as the optional last KEY of psadd/psdelete; empty in cluster mode."""
        return () if self.cluster else (REGISTRY,)

    def _add(self, name: str, keys: StreamKeys, args: tuple[Any, ...], with_decay: bool) -> Operation[list[Any]]:
        """psadd.lua with the registry steps around it; the per-item results."""
        if self.cluster:
            yield Command(("SADD", REGISTRY, name))
            if with_decay:
                yield Command(("SADD", DECAY_REGISTRY, name))
            script_keys: tuple[str, ...] = keys.all()
        else:
            script_keys = (*keys.all(), REGISTRY, DECAY_REGISTRY) if with_decay else (*keys.all(), REGISTRY)
        fresh, results = yield Script("psadd", script_keys, args)
        if fresh:  # a psdelete may have unregistered it between our SADD and the script
            yield Command(("SADD", REGISTRY, name))
        return list(results)

    def psaddmany(self, name: str, items: Iterable[tuple[Any, Any, Any]],
                  readd: bool = False, with_decay: bool = False) -> Operation[list[int | float]]:
        keys = self.keys(name)
        args: list[Any] = []
        for position, item in enumerate(items):
            if not isinstance(item, tuple | list) or len(item) != 3:
                raise TypeError(f"items[{position}] must be a (key, value, score) tuple, not {item!r}")
            key, value, score = item
            args += [validation.item_key(key), validation.stored(value, self.serializer),
                     validation.as_arg(validation.number(score, "score"))]
        if not args:
            return []
        reply = yield from self._add(name, keys, (name, "1" if readd else "0", *args), with_decay)
        return [priority(raw) for raw in reply]

    def psadd(self, name: str, key: Any, value: Any, score: Any = 1, readd: bool = False,
              with_decay: bool = False) -> Operation[int | float]:
        keys = self.keys(name)
        args = (name, "1" if readd else "0", validation.item_key(key), validation.stored(value, self.serializer),
                validation.as_arg(validation.number(score, "score")))
        reply = yield from self._add(name, keys, args, with_decay)
        return priority(reply[0])

    def pspull(self, name: str, count: int = 1, purge: bool = True, gate: bool = False,
               expire_at: timedelta | datetime = timedelta(minutes=1440)) -> Operation[dict[Any, Any]]:
        keys = self.keys(name)
        absolute, relative = validation.expiry(expire_at)
        args = (validation.count(count), "1" if purge else "0", "1" if gate else "0",
                now_arg(self.clock) if not absolute else "", absolute, relative)
        reply = yield Script("pspull", tuple(keys.all()), args)
        return self._items(name, zip(reply[::2], reply[1::2], strict=True), removed=True)

    def pskeys(self, name: str, withscores: bool = False, desc: bool = False) -> Operation[list[Any]]:
        command = ("ZRANGE", self.keys(name).priorities, 0, -1, *(("REV",) if desc else ()))
        if not withscores:
            return list((yield Command(command)))
        return scored((yield Command((*command, "WITHSCORES"))))

    def psvalues(self, name: str) -> Operation[dict[Any, Any]]:
        reply = yield Command(("HGETALL", self.keys(name).values))
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        return self._items(name, pairs, removed=False)

    def psdecay(self) -> Operation[set[Any]]:
        return set((yield Command(("SMEMBERS", DECAY_REGISTRY))))

    def psdelete(self, name: str) -> Operation[bool]:
        keys = self.keys(name)
        deleted = yield Script("psdelete", (*keys.all(), *self._registry()), (name,))
        if self.cluster:
            yield Command(("SREM", REGISTRY, name))
            if (yield Command(("EXISTS", *keys.all()))):  # a concurrent psadd wrote after our DEL
                yield Command(("SADD", REGISTRY, name))
        return bool(deleted)

    def psremove(self, name: str, keys: Iterable[Any]) -> Operation[int]:
        k = self.keys(name)
        items = [validation.item_key(key) for key in keys]
        if not items:
            return 0
        if len(set(items)) != len(items):
            raise ValueError("psremove: each item key may be given once")
        return int((yield Script("psremove", (k.values, k.priorities, k.expiring), tuple(items))))

    def psincrement(self, name: str, key: Any, score: Any) -> Operation[float]:
        keys = self.keys(name)
        command = ("ZINCRBY", keys.priorities, validation.as_arg(validation.number(score, "score")),
                   validation.item_key(key))
        return float((yield Command(command)))

    def psdeletebelowthreshold(self, name: str, threshold: Any, gate: bool = False) -> Operation[list[Any]]:
        keys = self.keys(name)
        limit = validation.as_arg(validation.number(threshold, "threshold"))
        removed: list[Any] = []
        more = 1
        while more:
            more, batch = yield Script("psdeletebelowthreshold", (keys.values, keys.priorities, keys.excluded),
                                       (limit, "1" if gate else "0", BATCH))
            removed += batch
        return removed

    def pslen(self, name: str) -> Operation[int]:
        return int((yield Command(("ZCARD", self.keys(name).priorities))))

    def psget(self, name: str, key: Any) -> Operation[Any]:
        return self._load((yield Command(("HGET", self.keys(name).values, validation.item_key(key)))))

    def psdecrement_all(self, name: str, decrement: Any) -> Operation[int]:
        keys = self.keys(name)
        amount = validation.as_arg(validation.number(decrement, "decrement"))
        return int((yield Script("psdecrement_all", (keys.priorities,), (amount,))))

    def psnames(self) -> Operation[set[Any]]:
        return set((yield Command(("SMEMBERS", REGISTRY))))

    def psexpire(self) -> Operation[int]:
        names = []
        for raw in (yield Command(("SMEMBERS", REGISTRY))):
            name = text(raw)
            if isinstance(name, str) and name:
                names.append(name)
            else:
                logger.error("psexpire: registered stream name %r is not a non-empty UTF-8 str; skipped", raw)
        now = now_arg(self.clock)
        removed = 0
        skipped: set[str] = set()
        for group in self._expire_groups(sorted(names)):
            while group:
                keys = [key for name in group for key in self._expire_keys(name)]
                count, resume, now_used, broken = yield Script("psexpire", tuple(keys), (now, BATCH, *group))
                removed += int(count)
                now = str(now_used)  # every batch compares with the time of the first
                skipped.update(text(name) for name in broken)
                group = group[int(resume) - 1:] if resume else []
        for name in sorted(skipped):
            logger.error("psexpire: stream %r has a key of another type; skipped, its expired items stay", name)
        return removed

    def _expire_keys(self, name: str) -> tuple[str, str, str]:
        keys = StreamKeys(name, self.cluster)
        return keys.values, keys.priorities, keys.expiring

    def _expire_groups(self, names: list[str]) -> list[list[str]]:
        """psexpire's streams: by hash slot in cluster mode, else in chunks of EXPIRE_CHUNK."""
        groups: dict[int, list[str]] = {}
        for position, name in enumerate(names):
            if self.cluster:
                slots = {key_slot(key.encode()) for key in self._expire_keys(name)}
                if len(slots) != 1:  # a name registered by another client that cluster mode cannot tag
                    logger.warning("psexpire: stream %r has keys in several hash slots; skipped", name)
                    continue
                groups.setdefault(slots.pop(), []).append(name)
            else:
                groups.setdefault(position // EXPIRE_CHUNK, []).append(name)
        return list(groups.values())
