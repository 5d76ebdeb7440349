"""The prioritized-stream operations, written once, without I/O.

Each operation is a generator: it validates its arguments (raising before anything is
sent), yields the calls it needs (a :class:`Command` or a :class:`Script`), receives each
reply, and returns the decoded result. ``sync.Streams`` and ``aio.AsyncStreams`` only
drive these generators, one with blocking calls, one with ``await``; no logic is written
twice (DESIGN.md, "one algorithm, two thin drivers").

Every multi-step operation is one script: atomic, one round trip. In cluster mode the
registry ``:ps:keys`` hashes to another slot than a stream's keys, so it is written in a
separate, idempotent step, ordered so that every stream holding items is registered:

- psadd/psaddmany register the name first (SADD), then add the items. A crash in
  between leaves a registered empty stream.
- psdelete deletes the stream's keys first, then unregisters (SREM). A crash in between
  leaves a registered empty stream.

A registered empty stream is a state good-redis reaches anyway (a stream drained by
pspull and psexpire stays registered until psdelete): psnames lists it and psexpire
passes over it at the cost of one ZRANGEBYSCORE. One race remains that no cross-slot
ordering closes: a psdelete that runs between a concurrent psadd's two steps leaves that
psadd's items in a stream that is not registered until the next psadd to it. Without
cluster mode the registry is one of the script's KEYS and all of this is one atomic step.
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
    """A key as good-redis returns it from pspull/psvalues: bytes decoded as UTF-8."""
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def priority(raw: Any) -> int | float:
    """A priority from a script reply: an int when whole (good-redis's psadd returns ints)."""
    value = float(raw)
    return int(value) if value.is_integer() else value


def now_arg(clock: Callable[[], float] | None) -> str:
    """The time a script compares with: '' makes the script read the server's TIME."""
    return "" if clock is None else validation.as_arg(float(clock()))


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

    def _registry(self) -> tuple[str, ...]:
        """The registry as the optional last KEY of psadd/psdelete; empty in cluster mode."""
        return () if self.cluster else (REGISTRY,)

    def psaddmany(self, name: str, items: Iterable[tuple[Any, Any, Any]],
                  readd: bool = False) -> Operation[list[int | float]]:
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
        if self.cluster:
            yield Command(("SADD", REGISTRY, name))
        reply = yield Script("psadd", (*keys.all(), *self._registry()), (name, "1" if readd else "0", *args))
        return [priority(raw) for raw in reply]

    def psadd(self, name: str, key: Any, value: Any, score: Any = 1, readd: bool = False) -> Operation[int | float]:
        keys = self.keys(name)
        args = (name, "1" if readd else "0", validation.item_key(key), validation.stored(value, self.serializer),
                validation.as_arg(validation.number(score, "score")))
        if self.cluster:
            yield Command(("SADD", REGISTRY, name))
        reply = yield Script("psadd", (*keys.all(), *self._registry()), args)
        return priority(reply[0])

    def pspull(self, name: str, count: int = 1, purge: bool = True, gate: bool = False,
               expire_at: timedelta | datetime = timedelta(minutes=1440)) -> Operation[dict[Any, Any]]:
        keys = self.keys(name)
        absolute, relative = validation.expiry(expire_at)
        args = (validation.count(count), "1" if purge else "0", "1" if gate else "0",
                now_arg(self.clock) if not absolute else "", absolute, relative)
        reply = yield Script("pspull", tuple(keys.all()), args)
        return {text(reply[i]): self._load(reply[i + 1]) for i in range(0, len(reply), 2)}

    def pskeys(self, name: str) -> Operation[list[Any]]:
        return list((yield Command(("ZRANGE", self.keys(name).priorities, 0, -1))))

    def psvalues(self, name: str) -> Operation[dict[Any, Any]]:
        reply = yield Command(("HGETALL", self.keys(name).values))
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        return {text(key): self._load(value) for key, value in pairs}

    def psdelete(self, name: str) -> Operation[bool]:
        keys = self.keys(name)
        deleted = yield Script("psdelete", (*keys.all(), *self._registry()), (name,))
        if self.cluster:
            yield Command(("SREM", REGISTRY, name))
        return bool(deleted)

    def psincrement(self, name: str, key: Any, score: Any) -> Operation[float]:
        keys = self.keys(name)
        command = ("ZINCRBY", keys.priorities, validation.as_arg(validation.number(score, "score")),
                   validation.item_key(key))
        return float((yield Command(command)))

    def psdeletebelowthreshold(self, name: str, threshold: Any, gate: bool = False) -> Operation[list[Any]]:
        keys = self.keys(name)
        limit = validation.as_arg(validation.number(threshold, "threshold"))
        reply = yield Script("psdeletebelowthreshold", (keys.values, keys.priorities, keys.excluded),
                             (limit, "1" if gate else "0"))
        return list(reply)

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
        names = sorted(text(name) for name in (yield Command(("SMEMBERS", REGISTRY))))
        now = now_arg(self.clock)
        removed = 0
        for group in self._expire_groups(names):
            removed += int((yield Script("psexpire", tuple(group), (now,))))
        return removed

    def _expire_groups(self, names: list[str]) -> list[list[str]]:
        """psexpire's KEYS, (t, s, exp) per stream: by hash slot in cluster mode, else in chunks."""
        groups: dict[int, list[str]] = {}
        for position, name in enumerate(names):
            keys = StreamKeys(name, self.cluster)
            triple = [keys.values, keys.priorities, keys.expiring]
            if self.cluster:
                slots = {key_slot(key.encode()) for key in triple}
                if len(slots) != 1:  # a name registered by another client that cluster mode cannot tag
                    logger.warning("psexpire: stream %r has keys in several hash slots; skipped", name)
                    continue
                groups.setdefault(slots.pop(), []).extend(triple)
            else:
                groups.setdefault(position // EXPIRE_CHUNK, []).extend(triple)
        return list(groups.values())
