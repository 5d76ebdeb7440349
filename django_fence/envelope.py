"""The envelope stored by get_or_set, and the pure decisions made on it.

References: XFetch is "Optimal Probabilistic Cache Stampede Prevention",
Vattani, Chierichetti, Lowenstein, VLDB 2015: a caller refreshes early when
``now - delta * beta * ln(rand()) >= expiry``, where delta is the measured
recompute time. Everything here is a pure function of (entry, now, options,
random draw), tested with a fixed clock.
"""

from __future__ import annotations

import enum
import math
from typing import Any, NamedTuple

from .conf import FenceOptions
from .store import MISSING


class Envelope(NamedTuple):
    """What ``get_or_set`` stores: the value and what XFetch needs, in ONE entry.

    A NamedTuple, not a dataclass: it unpickles through its constructor, while a
    frozen dataclass's ``__setstate__`` costs microseconds on every cache hit.
    Its import path (django_fence.envelope.Envelope) is part of every stored
    entry: moving or renaming it makes existing entries unreadable.
    """

    value: Any
    #: Wall-clock time after which the value is stale (inf: never).
    soft_expiry: float
    #: Seconds the recompute that produced ``value`` took.
    delta: float
    #: Wall-clock time the value was stored.
    stored_at: float


class Timed(NamedTuple):
    """What a computation returns to decide its own timeout (the page decorator learns it from the response).

    ``grace=False`` stores the value without a stale window: it is gone at its
    timeout. The page decorator uses that for short markers whose only job is
    to release the callers waiting at that moment; with ``over_stale=False``
    such a marker does not replace a value that can still be served. ``delta``
    is the recompute time to record when the caller measured it itself.
    """

    value: Any
    timeout: float | None
    grace: bool = True
    delta: float | None = None
    over_stale: bool = True


def untimed(result: Any) -> Any:
    """The value a computation produced, without its timeout."""
    return result.value if type(result) is Timed else result


class Step(enum.Enum):
    HIT = "hit"  # serve the value
    EARLY = "early"  # XFetch picked this caller to refresh before expiry
    STALE = "stale"  # past soft expiry, inside the grace window: serve stale, one refreshes
    MISS = "miss"  # nothing usable: one computes, the others wait


def decide(entry: Any, now: float, opts: FenceOptions, draw: float) -> Step:
    """What to do with what the cache returned. ``draw`` is uniform in (0, 1]."""
    if entry is MISSING:
        return Step.MISS
    if type(entry) is not Envelope:
        return Step.HIT  # a plain value written by set() or through the bare alias (even a tuple)
    if now >= entry.soft_expiry:
        return Step.STALE if now < entry.soft_expiry + opts.grace else Step.MISS
    if opts.beta and entry.delta and now - entry.delta * opts.beta * math.log(draw) >= entry.soft_expiry:
        return Step.EARLY
    return Step.HIT


def same_entry(a: Any, b: Any) -> bool:
    """Whether two reads saw the same write (envelopes by their stamps, never values by equality)."""
    if type(a) is Envelope and type(b) is Envelope:
        return a.stored_at == b.stored_at and a.soft_expiry == b.soft_expiry and a.delta == b.delta
    return a is b


def unwrap(entry: Any) -> Any:
    return entry.value if type(entry) is Envelope else entry
