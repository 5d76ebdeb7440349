"""The engine's view of the wrapped cache: values, envelopes and generations.

An adapter like locks.py: every call translates the client's "server
unavailable" errors into BackendUnavailable, so the engine never sees a
client's exception types.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.cache.backends.base import BaseCache

from .exceptions import BackendUnavailable, is_unavailable, translated

MISSING = object()


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """A key as the wrapped cache sees it: the name and the version to make it with."""

    name: str
    version: int | None = None

    def derived(self, suffix: str) -> Key:
        """A companion key (lock, generation) in the same version."""
        return Key(self.name + suffix, self.version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name} (version {self.version})"
GENERATION_SUFFIX = ":fence-gen"
# A generation only has to outlive the longest recompute it fences.
GENERATION_TTL = 24 * 3600


class CacheStore:
    """Reads and writes of one wrapped Django cache, in the engine's terms."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def get(self, key: Key) -> Any:
        try:  # the hit path: a plain try instead of the context manager saves a few microseconds
            return self.cache.get(key.name, MISSING, version=key.version)
        except Exception as exc:
            if is_unavailable(exc):
                raise BackendUnavailable(f"get: {type(exc).__name__}: {exc}") from exc
            raise

    def set(self, key: Key, value: Any, ttl: float | None) -> None:
        with translated("set"):
            self.cache.set(key.name, value, ttl, version=key.version)

    def add(self, key: Key, value: Any, ttl: float | None) -> bool:
        with translated("add"):
            return bool(self.cache.add(key.name, value, ttl, version=key.version))

    def value_and_generation(self, key: Key) -> tuple[Any, int | None]:
        """The key's current value (or MISSING) and its generation, in one round trip."""
        generation = key.name + GENERATION_SUFFIX
        with translated("get_many"):
            found = self.cache.get_many([key.name, generation], version=key.version)
        return found.get(key.name, MISSING), found.get(generation)

    def bump_generation(self, key: Key) -> None:
        """Invalidate in-flight recomputes of ``key``: its generation only ever grows."""
        generation = key.derived(GENERATION_SUFFIX)
        with translated("generation"):
            for _ in range(3):  # add-then-incr, again if evicted in between
                self.cache.add(generation.name, 0, GENERATION_TTL, version=generation.version)
                try:
                    self.cache.incr(generation.name, version=generation.version)
                    return
                except ValueError:
                    continue
        raise BackendUnavailable(f"generation of {key}: the counter kept disappearing (evicted?)")
