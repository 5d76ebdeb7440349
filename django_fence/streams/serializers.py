"""Serializers for structured values and set items: anything with ``dumps`` and ``loads``.

``json`` and ``pickle`` modules qualify as they are. ``NamedtupleSerializer`` stores a
namedtuple as a JSON object of its fields, as redset's does, so sets written by redset
read back here.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class Serializer(Protocol):
    """``dumps(obj) -> str | bytes`` and ``loads(str | bytes) -> obj``."""

    def dumps(self, obj: Any, /) -> Any: ...

    def loads(self, data: Any, /) -> Any: ...


class NamedtupleSerializer:
    """A namedtuple class's instances as JSON objects: ``{"field": value, ...}``."""

    def __init__(self, NTClass: type[Any]) -> None:  # redset names it so
        if not (isinstance(NTClass, type) and issubclass(NTClass, tuple) and hasattr(NTClass, "_fields")):
            raise TypeError(f"NamedtupleSerializer needs a namedtuple class, not {NTClass!r}")
        self.NTClass = NTClass

    def dumps(self, nt_instance: Any) -> str:
        if not isinstance(nt_instance, self.NTClass):
            raise TypeError(f"expected a {self.NTClass.__name__}, not {type(nt_instance).__name__}")
        return json.dumps(nt_instance._asdict())  # type: ignore[attr-defined]  # a namedtuple, checked above

    def loads(self, data: str | bytes) -> Any:
        return self.NTClass(**json.loads(data))
