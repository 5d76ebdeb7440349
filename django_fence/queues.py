"""The memcached write-behind queue: a pointer, numbered slots, and a drain that never skips a slot.

Key scheme of the classic memcached queue: ``<prefix>-curr`` (the pointer to
the last slot taken) and ``<prefix>-key-N`` (slot N). Enqueue takes no lock:
the server's atomic ``incr`` of the pointer hands every producer its own slot,
then the producer ``add``s it, so an enqueue is two round trips (three when
the pointer has to be created) and never waits on another producer. ``add``,
not ``set``: a pointer that went backwards (a server rejoined a pool with an
old copy) hands out numbers already in use, and ``set`` would overwrite a
queued vote; ``add`` refuses, and the producer takes another number. The
original's ``<prefix>-lock`` is not used: draining is coordinated by the
database cursor the drain commits with the applied totals (polls/services.py),
which, unlike a memcached lock, survives a restart of memcached.

Slot numbers survive the pointer's loss. A pointer is created at
``epoch << 24`` where ``epoch`` is the producer's clock in hundredths of a
second since 2024-01-01, so a pointer recreated after memcached restarted (or
after the server holding it left a pool) numbers its slots above every slot the
old one handed out, and the drain knows where the new numbering starts. Limits:
2**24 (16.7 million) slots per pointer lifetime, which the drain warns about at
half; two pointers created within the same 10 ms would share numbers; numbers
stay below 2**63 (Redis's INCR limit) for 170 years.

:func:`extend_ranges` and :func:`next_window` are pure: the drain's
bookkeeping is tested without a server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache.backends.base import BaseCache

from .exceptions import BackendUnavailable, translated

logger = logging.getLogger(__name__)

EPOCH_BITS = 24
EPOCH_ORIGIN = 1704067200  # 2024-01-01T00:00:00Z
EPOCH_UNITS_PER_SECOND = 100
DEFAULT_SLOT_TTL = 7 * 24 * 3600
MAX_MESSAGE_BYTES = 1000 * 1000  # memcached's default item size limit is 1 MB
SLOT_ATTEMPTS = 5  # numbers taken in a row before a stale pointer fails the enqueue
MEMCACHED_RELATIVE_TTL_LIMIT = 30 * 24 * 3600  # memcached protocol.txt: larger values are Unix timestamps


def memcached_ttl(ttl: int | None, now: float | None = None) -> int:
    """A TTL in seconds as raw memcached takes it (0: never expires), like Django's get_backend_timeout.

    memcached reads an exptime above 30 days as an absolute Unix time, so a
    relative TTL that long would expire at once: send ``now + ttl`` instead.
    """
    if not ttl:
        return 0
    if ttl > MEMCACHED_RELATIVE_TTL_LIMIT:
        return int((time.time() if now is None else now) + ttl)
    return ttl


class QueueUnavailable(BackendUnavailable):
    """The queue's server could not be reached; ``slot`` is set if one was taken but not written."""

    def __init__(self, message: str, slot: int | None = None) -> None:
        super().__init__(message)
        self.slot = slot


def epoch_of(slot: int) -> int:
    """Which pointer lifetime a slot number belongs to."""
    return slot >> EPOCH_BITS


def first_slot(epoch: int) -> int:
    """The first slot a pointer created in ``epoch`` hands out."""
    return (epoch << EPOCH_BITS) + 1


def pointer_start(now: float) -> int:
    """The value a new pointer is created with: its first ``incr`` returns ``first_slot(epoch)``."""
    return max(1, int((now - EPOCH_ORIGIN) * EPOCH_UNITS_PER_SECOND)) << EPOCH_BITS


Range = list[int]  # [first, last], both included: JSON-friendly, stored by the drain's cursor


def extend_ranges(ranges: list[Range], position: int, pointer: int | None) -> tuple[list[Range], bool]:
    """Add the slots the pointer says were taken past what ``ranges`` (or ``position``) already cover.

    ``ranges`` are the taken-but-unresolved slots, ascending; ``position`` is the
    last slot resolved (applied or declared lost). Returns the new ranges and
    whether the pointer is stale: behind what is already known, which happens
    when a server holding an old pointer rejoins the pool.
    """
    ranges = [list(r) for r in ranges]
    if pointer is None:
        return ranges, False
    top = ranges[-1][1] if ranges else position
    if pointer <= top:
        return ranges, pointer < top and epoch_of(pointer) <= epoch_of(top)
    if pointer - (epoch_of(pointer) << EPOCH_BITS) > 1 << (EPOCH_BITS - 1):
        logger.warning("queue pointer %d has used half of its %d slots; see django_fence.queues", pointer,
                       1 << EPOCH_BITS)
    start = top + 1 if epoch_of(pointer) == epoch_of(top + 1) else first_slot(epoch_of(pointer))
    if start > pointer:  # a pointer created (or reset) that has handed out no slot yet
        return ranges, False
    if ranges and ranges[-1][1] + 1 == start:
        ranges[-1][1] = pointer
    else:
        ranges.append([start, pointer])
    return ranges, False


def next_window(ranges: list[Range], size: int) -> list[int]:
    """The first ``size`` slot numbers the ranges cover, in order."""
    numbers: list[int] = []
    for first, last in ranges:
        numbers.extend(range(first, min(last, first + size - len(numbers) - 1) + 1))
        if len(numbers) >= size:
            break
    return numbers


def drop_through(ranges: list[Range], slot: int) -> list[Range]:
    """The ranges without every slot up to and including ``slot``."""
    kept = []
    for first, last in ranges:
        if last <= slot:
            continue
        kept.append([max(first, slot + 1), last])
    return kept


def compress(numbers: Iterable[int]) -> list[Range]:
    """Slot numbers as ascending [first, last] runs, for reports."""
    runs: list[Range] = []
    for number in sorted(numbers):
        if runs and runs[-1][1] + 1 == number:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return runs


class WriteBehindQueue:
    """Producers ``enqueue`` strings; one drain at a time reads slots past its cursor.

    ``client`` is a ``pylibmc.Client`` (any server list, ketama or not) or a
    Django cache. Slots expire after ``slot_ttl`` seconds if never drained.
    """

    def __init__(self, client: Any, prefix: str, slot_ttl: int = DEFAULT_SLOT_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix) or len(prefix) > 150:
            raise ValueError(f"prefix must be a non-empty str of at most 150 characters, no spaces; got {prefix!r}.")
        if isinstance(slot_ttl, bool) or not isinstance(slot_ttl, int) or slot_ttl <= 0:
            raise ValueError(f"slot_ttl must be an int > 0 (seconds), got {slot_ttl!r}.")
        self.prefix = prefix
        self.slot_ttl = slot_ttl
        self.clock = clock
        self._django = isinstance(client, BaseCache)
        if not self._django and not type(client).__module__.startswith(("pylibmc", "_pylibmc")):
            raise TypeError(f"client must be a pylibmc.Client or a Django cache, not {type(client).__name__}.")
        self.client = client

    @property
    def pointer_key(self) -> str:
        return f"{self.prefix}-curr"

    def slot_key(self, number: int) -> str:
        return f"{self.prefix}-key-{number}"

    # -- producers ------------------------------------------------------------------------------------
    def enqueue(self, message: str) -> int:
        """Store ``message`` in a slot of its own; return the slot number.

        Raises QueueUnavailable if the server cannot be reached; its ``slot``
        says whether a slot was taken (the drain reports it lost after its grace).
        """
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, not {type(message).__name__}.")
        if not message or len(message.encode()) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message must be 1 to {MAX_MESSAGE_BYTES} bytes long.")
        for _ in range(SLOT_ATTEMPTS):
            try:
                with translated(f"queue {self.prefix!r}: take a slot"):
                    number = self._take_slot()
            except BackendUnavailable as exc:
                raise QueueUnavailable(str(exc)) from exc
            try:
                with translated(f"queue {self.prefix!r}: write slot {number}"):
                    stored = self._add(self.slot_key(number), message, self.slot_ttl)
            except BackendUnavailable as exc:
                raise QueueUnavailable(str(exc), slot=number) from exc
            if stored:
                return number
            # The slot holds another message: the pointer went backwards. Never overwrite; take another.
            logger.warning("queue %s: slot %d was already taken (stale pointer); taking another", self.prefix,
                           number)
        raise QueueUnavailable(f"queue {self.prefix!r}: {SLOT_ATTEMPTS} slots in a row were already taken")

    def _take_slot(self) -> int:
        for _ in range(5):
            number = self._incr(self.pointer_key)
            if number is not None:
                return number
            # No pointer (first use, restart, eviction): one producer creates it, everyone increments.
            self._add(self.pointer_key, pointer_start(self.clock()), None)
        raise BackendUnavailable(f"queue {self.prefix!r}: the pointer keeps disappearing")

    # -- the drain ------------------------------------------------------------------------------------
    def pointer(self) -> int | None:
        """The last slot handed out, or None if there is no pointer (never used, or lost)."""
        try:
            with translated(f"queue {self.prefix!r}: read the pointer"):
                value = self.client.get(self.pointer_key)
        except BackendUnavailable as exc:
            raise QueueUnavailable(str(exc)) from exc
        return None if value is None else int(value)

    def ensure_pointer(self) -> int:
        """The pointer, created as a producer would create it if it is missing (handing out no slot)."""
        try:
            with translated(f"queue {self.prefix!r}: create the pointer"):
                self._add(self.pointer_key, pointer_start(self.clock()), None)
        except BackendUnavailable as exc:
            raise QueueUnavailable(str(exc)) from exc
        pointer = self.pointer()
        if pointer is None:
            raise QueueUnavailable(f"queue {self.prefix!r}: the pointer disappeared as it was created")
        return pointer

    def read(self, numbers: list[int]) -> dict[int, str | None]:
        """The messages in these slots (one round trip per server); None for a slot that is empty.

        A slot whose server is down reads as empty: the drain waits for it,
        then reports it lost.
        """
        keys = {self.slot_key(n): n for n in numbers}
        try:
            with translated(f"queue {self.prefix!r}: read {len(numbers)} slots"):
                found = self._get_many(list(keys))
        except BackendUnavailable:
            found = self._get_each(list(keys))
        return {n: (str(found[key]) if key in found else None) for key, n in keys.items()}

    def _get_each(self, keys: list[str]) -> dict[str, Any]:
        """Slot by slot, so one server that is down hides only its own slots (pylibmc's get_multi fails whole)."""
        found: dict[str, Any] = {}
        for key in keys:
            try:
                with translated(f"queue {self.prefix!r}: read {key}"):
                    value = self.client.get(key)
            except BackendUnavailable:
                continue
            if value is not None:
                found[key] = value
        return found

    def discard(self, numbers: list[int]) -> None:
        """Delete drained slots. Best effort: a slot left behind expires after ``slot_ttl``."""
        if not numbers:
            return
        keys = [self.slot_key(n) for n in numbers]
        try:
            with translated(f"queue {self.prefix!r}: delete {len(keys)} slots"):
                if self._django:
                    self.client.delete_many(keys)
                else:
                    self.client.delete_multi(keys)
        except BackendUnavailable:
            logger.warning("queue %s: could not delete %d drained slots; they expire on their own",
                           self.prefix, len(keys), exc_info=True)

    def reset_pointer(self, stale: int, top: int) -> int:
        """Move a pointer that fell behind the drain (whose last known slot is ``top``) to a fresh epoch.

        The pointer is set, never deleted: a deleted pointer recreated within
        the same 10 ms epoch would hand out numbers again. The new value is
        above every number handed out so far. Returns it.
        """
        fresh = max(pointer_start(self.clock()), (epoch_of(top) + 1) << EPOCH_BITS)
        try:
            with translated(f"queue {self.prefix!r}: move the stale pointer"):
                if self._django:
                    self.client.set(self.pointer_key, fresh, timeout=None)
                else:
                    self.client.set(self.pointer_key, fresh)
        except BackendUnavailable as exc:
            raise QueueUnavailable(str(exc)) from exc
        logger.error("queue %s: pointer %d was behind the drain (a server rejoined with old data); moved it to %d",
                     self.prefix, stale, fresh)
        return fresh

    # -- the two client kinds -------------------------------------------------------------------------
    def _incr(self, key: str) -> int | None:
        if self._django:
            try:
                return int(self.client.incr(key))
            except ValueError:
                return None
        import pylibmc

        try:
            return int(self.client.incr(key))
        except pylibmc.NotFound:
            return None

    def _add(self, key: str, value: int | str, ttl: int | None) -> bool:
        if self._django:
            return bool(self.client.add(key, value, timeout=ttl))
        return bool(self.client.add(key, value, time=memcached_ttl(ttl)))

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        if self._django:
            return dict(self.client.get_many(keys))
        return dict(self.client.get_multi(keys))
