"""Argument checks shared by the streams and the sets: bad input fails here, before any write.

Each check raises ``TypeError`` for a value of the wrong type and ``ValueError`` for a
value of the right type that is out of range, naming the argument.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from django_fence.streams.serializers import Serializer

Scalar = bytes | str | int | float  # what Redis stores as a string


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: object, what: str) -> int | float:
    """A finite int or float (not a bool): a score, priority, threshold or decrement.

    NaN and infinities are refused: ZINCRBY of inf and -inf fails inside a script, after
    earlier writes of the same script have happened.
    """
    if not is_number(value):
        raise TypeError(f"{what} must be an int or float, not {type(value).__name__}")
    assert isinstance(value, int | float)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, not {value!r}")
    return value


def as_arg(value: int | float) -> str:
    """A number as Redis reads it back without loss (repr of a float round-trips)."""
    return repr(value) if isinstance(value, float) else str(value)


def count(value: object, what: str = "count") -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, not {value}")
    return value


def item_key(value: object) -> Scalar:
    """A stream item's key: bytes, str, int or float; never empty."""
    if not isinstance(value, bytes | str | int | float) or isinstance(value, bool):
        raise TypeError(f"an item key must be bytes, str, int or float, not {type(value).__name__}")
    if isinstance(value, bytes | str) and not value:
        raise ValueError("an item key may not be empty")
    return value


def stored(value: object, serializer: Serializer | None, what: str = "value") -> Scalar:
    """What goes to Redis for a value: ``serializer.dumps(value)``, or the value itself."""
    if serializer is not None:
        value = serializer.dumps(value)
        if not isinstance(value, bytes | str):
            raise TypeError(f"serializer.dumps must return bytes or str, not {type(value).__name__}")
        return value
    if not isinstance(value, bytes | str | int | float) or isinstance(value, bool):
        raise TypeError(
            f"a {what} must be bytes, str, int or float, not {type(value).__name__} (pass serializer= for others)"
        )
    return value


def expiry(expire_at: object) -> tuple[str, str]:
    """(absolute unix seconds, relative seconds) for pspull's script: one of them is ''.

    A timedelta is added to the clock inside the script; an aware datetime is absolute.
    Whole seconds, truncated, as good-redis stores them.
    """
    if isinstance(expire_at, datetime.timedelta):
        return "", as_arg(expire_at.total_seconds())
    if isinstance(expire_at, datetime.datetime):
        if expire_at.tzinfo is None or expire_at.utcoffset() is None:
            raise ValueError("expire_at must be an aware datetime (with tzinfo) or a timedelta")
        return str(int(expire_at.timestamp())), ""
    raise TypeError(f"expire_at must be a timedelta or an aware datetime, not {type(expire_at).__name__}")


def serializer(value: Any) -> Serializer | None:
    """An object with callable ``dumps`` and ``loads`` (``json``, ``NamedtupleSerializer``), or None."""
    if value is None:
        return None
    if not callable(getattr(value, "dumps", None)) or not callable(getattr(value, "loads", None)):
        raise TypeError("serializer must have callable dumps and loads (e.g. json)")
    return value  # type: ignore[no-any-return]  # checked just above: it has the protocol's methods
