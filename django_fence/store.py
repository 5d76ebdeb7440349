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

    def get_primary(self, key: Key) -> Any:
        """``get`` from the server that takes the writes.

        Around the lock the engine must see what the leader wrote: with
        replicas (several LOCATIONs), Django's RedisCache and django-redis read
        from a replica, which may not have the value yet, and a waiter that
        misses it would take the lock and recompute.
        """
        return self._primary_many([key.name], key.version).get(key.name, MISSING)

    def value_and_generation(self, key: Key) -> tuple[Any, int | None]:
        """The key's current value (or MISSING) and its generation, in one round trip, from the primary."""
        generation = key.name + GENERATION_SUFFIX
        found = self._primary_many([key.name, generation], key.version)
        return found.get(key.name, MISSING), found.get(generation)

    def _primary_many(self, names: list[str], version: int | None) -> dict[str, Any]:
        cache: Any = self.cache
        with translated("get_many"):
            module = type(cache).__module__
            if module == "django.core.cache.backends.redis":
                raw = [cache.make_and_validate_key(name, version) for name in names]
                client = cache._cache.get_client(write=True)
                loads = cache._cache._serializer.loads
                return {name: loads(value) for name, value in zip(names, client.mget(raw), strict=True)
                        if value is not None}
            if module.startswith("django_redis"):
                from django_redis.client import DefaultClient

                if isinstance(cache.client, DefaultClient):
                    primary = cache.client.get_client(write=True)
                    return dict(cache.client.get_many(names, version=version, client=primary))
            return dict(self.cache.get_many(names, version=version))

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
