"""CounterService: atomic counters with a zero floor on memcached, Redis or any Django cache.

Every mutation is one atomic counter operation of the server, never a
read-modify-write: ``incr``/``decr`` on memcached, and for a counter that does
not exist yet ``add`` (which only one caller wins) followed by ``incr``. A
counter evicted between the ``add`` and the ``incr`` is simply created again
(django-ratelimit PR #81 lost counts there; pylibmc raises ``NotFound`` on
``incr`` of a missing key, Django's memcached backends turn it into
``ValueError``).

Decrements stop at zero, as memcached's own ``decr`` does ("the value will not
go below 0", memcached protocol.txt): on memcached we rely on the server, on
Redis a short Lua script does the same atomically, and on other Django caches
(LocMem, database, file) the value is decremented and, if it went below zero,
the overshoot is added back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from django.core.cache.backends.base import MEMCACHE_MAX_KEY_LENGTH, BaseCache

from .exceptions import BackendUnavailable, translated
from .queues import memcached_ttl

logger = logging.getLogger(__name__)

# What memcached refuses in a key (protocol.txt: no control characters or whitespace, at most 250 bytes).
# Every backend gets the same rule, so a counter that works on LocMem also works on memcached.
REFUSED_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")
# add-then-incr is retried this often if the new counter keeps disappearing (evictions under memory pressure).
CREATE_ATTEMPTS = 5

# Both scripts: KEYS[1] the counter; ARGV[1] delta (>= 0); ARGV[2] ttl in seconds for a new counter (0: none).
# They return the new value. One round trip, atomic on the server; a missing counter starts at 0.
REDIS_CREATE = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], 0, 'NX', 'EX', ARGV[2])
end
"""
REDIS_INCREMENT = REDIS_CREATE + "return redis.call('INCRBY', KEYS[1], ARGV[1])\n"
# Like memcached's decr: the value never goes below 0 (and keeps its TTL when floored).
REDIS_DECREMENT = REDIS_CREATE + """
local value = redis.call('DECRBY', KEYS[1], ARGV[1])
if value < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  value = 0
end
return value
"""


def check_delta(delta: object, *, what: str = "delta") -> int:
    """``delta`` as a non-negative int, or TypeError/ValueError saying what is wrong."""
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise TypeError(f"{what} must be an int, not {type(delta).__name__}.")
    if delta < 0:
        raise ValueError(f"{what} must be >= 0, got {delta}; use decrement() to count down.")
    return delta


class _Client:
    """The three operations CounterService needs, on one kind of client."""

    def server_key(self, key: str) -> str:
        return key

    def create(self, key: str, value: int, ttl: int) -> bool:
        raise NotImplementedError

    def incr(self, key: str, delta: int) -> int | None:
        """The new value, or None if the counter does not exist."""
        raise NotImplementedError

    def decr(self, key: str, delta: int) -> int | None:
        """The new value, floored at 0, or None if the counter does not exist."""
        raise NotImplementedError

    def get(self, key: str) -> object:
        raise NotImplementedError


class _PylibmcClient(_Client):
    """A ``pylibmc.Client``: memcached's incr/decr, NotFound for a missing key."""

    def __init__(self, client: Any) -> None:
        import pylibmc

        self.client = client
        self.not_found = pylibmc.NotFound

    def create(self, key: str, value: int, ttl: int) -> bool:
        return bool(self.client.add(key, value, time=memcached_ttl(ttl)))

    def incr(self, key: str, delta: int) -> int | None:
        try:
            return int(self.client.incr(key, delta))
        except self.not_found:
            return None

    def decr(self, key: str, delta: int) -> int | None:
        try:
            return int(self.client.decr(key, delta))
        except self.not_found:
            return None

    def get(self, key: str) -> object:
        return self.client.get(key)


def counted(key: str, result: object) -> int:
    """The new value a Django cache's incr/decr answered; BackendUnavailable if it did not count.

    pymemcache's HashClient answers False, not an error, while it deems a server dead:
    ``int(False)`` would be a silent 0 and a lost count.
    """
    if isinstance(result, bool) or not isinstance(result, int):
        raise BackendUnavailable(f"counter {key!r}: the server did not count ({result!r})")
    return result


class _DjangoClient(_Client):
    """Any Django cache. ``incr`` raises ValueError for a missing key (BaseCache's contract)."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache
        # Django's memcached backends send decr to the server, which floors at 0 itself.
        self.server_floors = type(cache).__module__ == "django.core.cache.backends.memcached"

    def server_key(self, key: str) -> str:
        return str(self.cache.make_key(key))

    def create(self, key: str, value: int, ttl: int) -> bool:
        return bool(self.cache.add(key, value, timeout=ttl or None))

    def incr(self, key: str, delta: int) -> int | None:
        try:
            return counted(key, self.cache.incr(key, delta))
        except ValueError:
            return None

    def decr(self, key: str, delta: int) -> int | None:
        try:
            value = counted(key, self.cache.decr(key, delta))
        except ValueError:
            return None
        if value < 0 and not self.server_floors:
            # Give back only our own overshoot: concurrent decrements each return what they took
            # below zero, so the counter settles at 0 whatever the interleaving.
            self.cache.incr(key, min(delta, -value))
            return 0
        return value

    def get(self, key: str) -> object:
        return self.cache.get(key)


class _RedisClient(_DjangoClient):
    """Django's RedisCache or django-redis: one Lua call per mutation, atomic on the server."""

    def __init__(self, cache: BaseCache, raw: Any) -> None:
        super().__init__(cache)
        self.raw = raw

    def create(self, key: str, value: int, ttl: int) -> bool:
        return bool(self.raw.set(self.server_key(key), value, nx=True, ex=ttl or None))

    def incr(self, key: str, delta: int) -> int | None:
        return int(self.raw.eval(REDIS_INCREMENT, 1, self.server_key(key), delta, self.ttl))

    def decr(self, key: str, delta: int) -> int | None:
        return int(self.raw.eval(REDIS_DECREMENT, 1, self.server_key(key), delta, self.ttl))

    ttl = 0


def redis_client_of(cache: BaseCache) -> Any:
    """The redis-py client behind Django's RedisCache or django-redis, else None."""
    module = type(cache).__module__
    if module == "django.core.cache.backends.redis":
        return cache._cache.get_client(write=True)  # type: ignore[attr-defined]  # Django's RedisCacheClient
    if module.startswith("django_redis"):
        return cache.client.get_client(write=True)  # type: ignore[attr-defined]  # django-redis's client
    return None


def adapt(client: object, default_ttl: int = 0) -> _Client:
    """Wrap a pylibmc.Client or a Django cache in the matching adapter."""
    if isinstance(client, BaseCache):
        raw = redis_client_of(client)
        if raw is not None:
            adapter = _RedisClient(client, raw)
            adapter.ttl = default_ttl
            return adapter
        return _DjangoClient(client)
    if type(client).__module__.startswith(("pylibmc", "_pylibmc")):
        return _PylibmcClient(client)
    raise TypeError(f"client must be a pylibmc.Client or a Django cache, not {type(client).__name__}.")


class CounterService:
    """Named counters that only the server's atomic operations change.

    ``client`` is a configured ``pylibmc.Client`` or any Django cache (e.g.
    ``caches["votes"]``). ``default_ttl`` (seconds, 0 = never) applies when a
    counter is created. Server errors surface as :class:`BackendUnavailable`.
    """

    def __init__(self, client: Any, default_ttl: int = 0) -> None:
        if isinstance(default_ttl, bool) or not isinstance(default_ttl, int) or default_ttl < 0:
            raise ValueError(f"default_ttl must be an int >= 0 (seconds, 0 = never), got {default_ttl!r}.")
        self.client = adapt(client, default_ttl)
        self.default_ttl = default_ttl

    def _check_key(self, key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}.")
        if not key:
            raise ValueError("key must not be empty.")
        server_key = self.client.server_key(key)
        if REFUSED_CHARACTERS.search(server_key):
            raise ValueError(f"key {key!r} contains whitespace or control characters, which memcached refuses.")
        if len(server_key.encode()) > MEMCACHE_MAX_KEY_LENGTH:
            raise ValueError(f"key {key[:40]!r}... is longer than memcached's {MEMCACHE_MAX_KEY_LENGTH} bytes.")
        return key

    def increment(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` (>= 0); a missing counter starts at 0. Returns the new count."""
        self._check_key(key)
        check_delta(delta)
        return self._increment(key, delta)

    def decrement(self, key: str, delta: int = 1) -> int:
        """Subtract ``delta`` (>= 0), never below 0; a missing counter starts at 0. Returns the new count."""
        self._check_key(key)
        check_delta(delta)
        return self._decrement(key, delta)

    def bulk_bump(self, deltas: Mapping[str, int]) -> dict[str, int]:
        """Apply many deltas: positive increments, negative decrements (floored at 0), 0 reads.

        Every key and delta is checked before anything is written.
        """
        if not isinstance(deltas, Mapping):
            raise TypeError(f"deltas must be a dict of key -> int, not {type(deltas).__name__}.")
        for key, delta in deltas.items():
            self._check_key(key)
            if isinstance(delta, bool) or not isinstance(delta, int):
                raise TypeError(f"the delta of {key!r} must be an int, not {type(delta).__name__}.")
        result = {}
        for key, delta in deltas.items():
            result[key] = self._increment(key, delta) if delta >= 0 else self._decrement(key, -delta)
        return result

    def get_count(self, key: str, default: int = 0) -> int:
        """The counter's value, or ``default`` if it does not exist."""
        self._check_key(key)
        with translated(f"counter get_count({key!r})"):
            value = self.client.get(key)
        if value is None:
            return default
        if not isinstance(value, int | str | bytes):
            raise TypeError(f"counter {key!r} holds a {type(value).__name__}, not a number.")
        return int(value)

    def _increment(self, key: str, delta: int) -> int:
        with translated(f"counter increment({key!r})"):
            for _ in range(CREATE_ATTEMPTS):
                value = self.client.incr(key, delta)
                if value is not None:
                    return value
                if self.client.create(key, delta, self.default_ttl):
                    return delta
        raise BackendUnavailable(f"counter {key!r} disappeared {CREATE_ATTEMPTS} times while being created.")

    def _decrement(self, key: str, delta: int) -> int:
        with translated(f"counter decrement({key!r})"):
            for _ in range(CREATE_ATTEMPTS):
                value = self.client.decr(key, delta)
                if value is not None:
                    return value
                if self.client.create(key, 0, self.default_ttl):
                    return 0
        raise BackendUnavailable(f"counter {key!r} disappeared {CREATE_ATTEMPTS} times while being created.")
