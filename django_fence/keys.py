"""Stable cache keys from function arguments (``@fenced``).

A key must be the same in every process and after a restart, so it is built
from values, never from ``repr`` of arbitrary objects (which may carry
memory addresses) or ``hash()`` (randomized per process for str).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid
from typing import Any

from django.db import models


def _encode(value: Any) -> Any:
    """A JSON-able, type-tagged form of ``value``; TypeError for what has no stable identity."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return {"enum": f"{type(value).__module__}.{type(value).__qualname__}", "v": _encode(value.value)}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return {type(value).__name__: value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"timedelta": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, models.Model):
        if value.pk is None:
            raise TypeError(f"cannot key an unsaved {type(value).__name__} (it has no pk)")
        return {"model": value._meta.label_lower, "pk": _encode(value.pk)}
    if isinstance(value, tuple | list):
        return {type(value).__name__: [_encode(item) for item in value]}
    if isinstance(value, set | frozenset):
        items = sorted(json.dumps(_encode(item), sort_keys=True) for item in value)
        return {"set": items}
    if isinstance(value, dict):
        pairs = sorted((json.dumps(_encode(k), sort_keys=True), _encode(v)) for k, v in value.items())
        return {"dict": pairs}
    raise TypeError(
        f"cannot build a cache key from an argument of type {type(value).__name__}: pass str, bytes, numbers, "
        "None, bools, dates, UUIDs, Decimals, enums, saved model instances, or tuples/lists/sets/dicts of "
        "those, or give @fenced a key= callable")


def argument_key(arguments: dict[str, Any]) -> str:
    """A canonical string for bound arguments (name -> value)."""
    return json.dumps({name: _encode(value) for name, value in arguments.items()}, sort_keys=True,
                      separators=(",", ":"))
