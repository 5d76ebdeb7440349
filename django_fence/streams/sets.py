"""Python-set-like sorted sets on Redis, with redset's API: SortedSet, TimeSortedSet, ScheduledSet.

Lower score comes out first. Every removal is one atomic command or script (ZPOPMIN, or
``lua/due_take.lua`` for due items), so producers and consumers in many processes never
receive the same item twice, and no lock is taken: ``lock_timeout``/``lock_expires`` are
accepted for redset compatibility and checked, but there is nothing for them to bound.

Where redset 0.5.1's behaviour and its documentation differ, we follow the documentation:

- ``add(item, score=0)`` scores 0; redset computes ``score or scorer(item)`` and so
  replaces an explicit 0 by the scorer's score.
- ``pop()`` of an item that fails to deserialize logs it and returns None, as redset's
  docstring says; redset 0.5.1 raises KeyError instead. ``pop()`` of an item that
  deserializes to a false value (``""``, ``0``) returns it; redset raises KeyError.
- redset's ``add`` calls redis-py 2's ``zadd(name, item, score)``; with redis-py >= 3 it
  fails. Ours works with redis-py 4.5 and later.

Time: TimeSortedSet scores and ScheduledSet's "due" come from ONE clock. By default that
is the Redis server's TIME, read inside the script, so clients whose clocks disagree
agree on what is due (redset compares with each client's ``time.time()``). Pass
``clock=`` (unix seconds) to use another single clock, e.g. in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django_fence.streams import validation
from django_fence.streams.commands import Command, Operation, Script, now_arg
from django_fence.streams.serializers import Serializer
from django_fence.streams.sync import SyncClient, run

logger = logging.getLogger(__name__)

__all__ = ["ScheduledSet", "SortedSet", "TimeSortedSet"]


def _members(reply: Any) -> list[Any]:
    """Members from a ZPOPMIN/ZRANGE reply: flat, or pairs (RESP3, redis-py's callbacks)."""
    if reply and isinstance(reply[0], list | tuple):
        return [pair[0] for pair in reply]
    return list(reply)


def _first_score(reply: Any) -> float | None:
    """The score of the first member of a WITHSCORES reply, flat or in pairs; None when empty."""
    if not reply:
        return None
    return float(reply[0][1] if isinstance(reply[0], list | tuple) else reply[1])


def _seconds(value: object, what: str) -> float | None:
    if value is None:
        return None
    if validation.number(value, what) <= 0:
        raise ValueError(f"{what} must be positive, not {value!r}")
    return float(value)  # type: ignore[arg-type]  # number() has checked it is an int or float


class SortedSet:
    """A Redis sorted set safe for consumption by many processes; lower score first.

    Items are stored as given (bytes, str, int, float) and read back as str, or through
    ``serializer`` (``dumps``/``loads``). Without ``scorer`` or an explicit score an item
    scores 0.
    """

    def __init__(self, redis_client: SyncClient, name: str,
                 scorer: Callable[[Any], float] | None = None, serializer: Serializer | None = None,
                 lock_timeout: float | None = None, lock_expires: float | None = None, *,
                 clock: Callable[[], float] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a set name must be a non-empty str, not {name!r}")
        if scorer is not None and not callable(scorer):
            raise TypeError("scorer must be a callable taking the item and returning its score")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning unix seconds, or None for the server's time")
        self.redis = redis_client
        self._name = name
        self.scorer = scorer
        self.serializer = validation.serializer(serializer)
        self.lock_timeout = _seconds(lock_timeout, "lock_timeout")
        self.lock_expires = _seconds(lock_expires, "lock_expires")
        self.clock = clock

    @property
    def name(self) -> str:
        """The Redis key of this set."""
        return self._name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name='{self.name}', length={len(self)}>"

    def _run(self, operation: Operation[Any]) -> Any:
        return run(self.redis, operation)

    def _one(self, *args: Any) -> Any:
        """One plain command on this set's key."""
        return run(self.redis, _single(Command(args)))

    def _dump(self, item: Any) -> validation.Scalar:
        return validation.stored(item, self.serializer, "set item")

    def _load(self, raw: Any) -> Any:
        if self.serializer is not None:
            return self.serializer.loads(raw)
        return raw.decode("utf-8") if isinstance(raw, bytes) else raw

    def __len__(self) -> int:
        return int(self._one("ZCARD", self.name))

    def __contains__(self, item: Any) -> bool:
        return self.score(item) is not None

    def _default_score(self, item: Any) -> float:
        return 0 if self.scorer is None else self.scorer(item)

    def add(self, item: Any, score: float | None = None) -> float:
        """Add the item, or update its score; the score it got."""
        member = self._dump(item)
        if score is None:
            if self._scored_by_server():
                return float(self._run(_single(Script("zadd_now", (self.name,), (member,)))))
            score = self._default_score(item)
        validation.number(score, "score")
        self._one("ZADD", self.name, validation.as_arg(score), member)
        return score

    def _scored_by_server(self) -> bool:
        return False

    def clear(self) -> bool:
        """Remove every item; whether there were any."""
        return bool(self._one("DEL", self.name))

    def discard(self, item: Any) -> bool:
        """Remove the item; whether it was there."""
        return bool(self._one("ZREM", self.name, self._dump(item)))

    def score(self, item: Any) -> float | None:
        """The item's score, or None when it is not in the set."""
        raw = self._one("ZSCORE", self.name, self._dump(item))
        return None if raw is None else float(raw)

    def peek(self, position: int = 0) -> Any:
        """The item at ``position`` (0: the next to pop) without removing it; KeyError if none."""
        members = _members(self._range(position, with_scores=False))
        if not members:
            raise KeyError(f"{self.name} is empty")
        return self._load(members[0])

    def peek_score(self) -> float | None:
        """The score of the next item to pop, or None."""
        return _first_score(self._range(0, with_scores=True))

    def pop(self) -> Any:
        """Atomically remove and return the next item; KeyError when there is none.

        An item that fails to deserialize is removed, logged, and returned as None.
        """
        raw = self._take_raw(1)
        if not raw:
            raise KeyError(f"{self.name} is empty")
        try:
            return self._load(raw[0])
        except Exception:
            logger.exception("set %s: could not deserialize %r; returning None", self.name, raw[0])
            return None

    def take(self, num: int) -> list[Any]:
        """Atomically remove and return up to ``num`` items; those that fail to deserialize are logged and skipped."""
        num = int(num)
        if num < 1:
            return []
        items = []
        for raw in self._take_raw(num):
            try:
                items.append(self._load(raw))
            except Exception:
                logger.exception("set %s: could not deserialize %r; skipped", self.name, raw)
        return items

    def _range(self, position: int, with_scores: bool) -> Any:
        if not isinstance(position, int) or isinstance(position, bool):
            raise TypeError(f"position must be an int, not {type(position).__name__}")
        extra = ("WITHSCORES",) if with_scores else ()
        return self._one("ZRANGE", self.name, position, position, *extra)

    def _take_raw(self, num: int) -> list[Any]:
        return _members(self._one("ZPOPMIN", self.name, num))


class TimeSortedSet(SortedSet):
    """A SortedSet scored by the time of ``add`` unless told otherwise: first in, first out.

    The time is the server's (one clock for every client) unless ``clock=`` is given.
    """

    def _scored_by_server(self) -> bool:
        return self.scorer is None and self.clock is None

    def _default_score(self, item: Any) -> float:
        if self.scorer is not None:
            return self.scorer(item)
        assert self.clock is not None  # else _scored_by_server() has sent zadd_now
        return float(self.clock())


class ScheduledSet(TimeSortedSet):
    """A TimeSortedSet whose ``peek``/``peek_score``/``pop``/``take`` see only due items (score <= now).

    Score an item with a future unix time to schedule it. "Now" is the server's TIME read
    inside the script, or ``clock()`` when given: one clock, so clients agree on what is due.
    """

    def available(self) -> int:
        """How many items are due."""
        return int(self._run(_single(Script("due_count", (self.name,), (now_arg(self.clock),)))))

    def _range(self, position: int, with_scores: bool) -> Any:
        if not isinstance(position, int) or isinstance(position, bool):
            raise TypeError(f"position must be an int, not {type(position).__name__}")
        args = (now_arg(self.clock), position, 1, "1" if with_scores else "0")
        return self._run(_single(Script("due_range", (self.name,), args)))

    def _take_raw(self, num: int) -> list[Any]:
        return list(self._run(_single(Script("due_take", (self.name,), (now_arg(self.clock), num)))))


def _single(call: Command | Script) -> Operation[Any]:
    """An operation of one call whose reply is the result."""
    return (yield call)
