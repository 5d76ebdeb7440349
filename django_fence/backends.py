"""FencedCache: a Django cache backend that wraps another alias and fences get_or_set.

Every BaseCache method is delegated to the wrapped alias (``LOCATION``) with
its real signature; ``get_or_set``/``aget_or_set`` go through the stampede
engine (engine.py). Values written by ``set`` are stored plain, so the bare
alias and the fence read each other's writes; ``get_or_set`` stores an
envelope (value + soft expiry + recompute time) that ``get`` unwraps.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, MEMCACHE_MAX_KEY_LENGTH, BaseCache
from django.core.exceptions import ImproperlyConfigured

from .aio import ARun, aget_or_set, astart, off_loop
from .conf import FenceOptions, configured_caches, parse_options
from .engine import Fence, Run, Step
from .envelope import Envelope, untimed, unwrap
from .flights import Deltas, Flights
from .locks import LOCK_SUFFIX, lock_for
from .stats import HISTORY_MINUTES, Stats
from .store import GENERATION_SUFFIX, MISSING, CacheStore, Key

logger = logging.getLogger(__name__)

# The longest suffix the fence adds to a key: a key is hashed if this one would be refused.
LONGEST_SUFFIX = max(LOCK_SUFFIX, GENERATION_SUFFIX, key=len)
HASHED_PREFIX = "fence-sha256:"
REFUSED_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")


class _Shared:
    """What every thread's FencedCache of one alias shares within a process."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.flights = Flights()
        self.deltas = Deltas()
        self.stats: Stats | None = None
        self.lock = threading.Lock()


_shared: dict[tuple[str, str], _Shared] = {}
_shared_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child inherits flights whose leaders did not come along, and unflushed counts."""
    for shared in _shared.values():
        shared.flights = Flights()
        shared.stats = None
        shared.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _alias_of(location: str, params: dict[str, Any]) -> str:
    """The CACHES alias this backend was configured under (Django does not pass it)."""
    for alias, config in configured_caches().items():
        same = config.get("LOCATION") == location and all(config.get(k) == v for k, v in params.items())
        if same and config.get("BACKEND", "").endswith("FencedCache"):
            return str(alias)
    return f"fence:{location}"


class FencedCache(BaseCache):
    """Wraps the cache alias named by LOCATION; ``get_or_set`` runs its callable once."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.options: FenceOptions
        self.options, problems = parse_options(params.get("OPTIONS", {}))
        if problems:
            raise ImproperlyConfigured(f"FencedCache wrapping {location!r}: {' '.join(problems)}")
        if not location or not isinstance(location, str):
            raise ImproperlyConfigured("FencedCache needs LOCATION: the alias of the cache to wrap.")
        self.target = location
        # The fence's own KEY_PREFIX / VERSION / KEY_FUNCTION, if set, namespace keys before the wrapped
        # cache applies its own; left unset, keys reach the wrapped cache unchanged.
        self._namespaced = any(name in params for name in ("KEY_PREFIX", "VERSION", "KEY_FUNCTION"))
        self._has_timeout = "TIMEOUT" in params
        alias = _alias_of(location, params)
        with _shared_lock:
            self._shared = _shared.setdefault((alias, repr(sorted(params.items(), key=str))), _Shared(alias))
        self.alias = alias
        self._local = threading.local()

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def inner(self) -> BaseCache:
        """The wrapped cache, this thread's instance (Django's caches are per thread)."""
        inner = caches[self.target]
        if isinstance(inner, FencedCache):
            raise ImproperlyConfigured(f"FencedCache {self.alias!r} wraps {self.target!r}, another FencedCache.")
        return inner

    def _fence(self, inner: BaseCache | None = None) -> Fence:
        inner = inner or self.inner
        fence: Fence | None = getattr(self._local, "fence", None)
        if fence is None or fence.store.cache is not inner or fence.flights is not self._shared.flights:  # type: ignore[attr-defined]
            fence = Fence(self.alias, CacheStore(inner), lock_for(inner, self.options.check_interval),
                          self.options, self._stats(), self._shared.flights, self._shared.deltas)
            self._local.fence = fence
        return fence

    def _stats(self) -> Stats:
        with self._shared.lock:
            if self._shared.stats is None:
                target = self.target
                self._shared.stats = Stats(lambda: caches[target], self.alias)
            return self._shared.stats

    def _key(self, key: Any, version: int | None = None, inner: BaseCache | None = None) -> Key:
        """The key as the wrapped cache gets it; hashed where the wrapped cache would refuse it."""
        name = str(key)
        if self._namespaced:
            name, version = self.make_key(key, version), None
        # Hash what memcached would refuse (> 250 bytes with our longest suffix, spaces, control
        # characters), whatever the backend, so a key maps the same way on every backend.
        full = (inner or self.inner).make_key(name + LONGEST_SUFFIX, version)
        if len(full.encode()) > MEMCACHE_MAX_KEY_LENGTH or REFUSED_CHARACTERS.search(full):
            name = HASHED_PREFIX + hashlib.sha256(name.encode()).hexdigest()
        return Key(name, version)

    def _timeout(self, timeout: Any, inner: BaseCache | None = None) -> Any:
        """A fenced alias without TIMEOUT uses the wrapped alias's, as it does for keys."""
        if timeout is not DEFAULT_TIMEOUT:
            return timeout
        return self.default_timeout if self._has_timeout else (inner or self.inner).default_timeout

    def _keys(self, keys: Iterable[Any], version: int | None) -> dict[Key, Any]:
        return {self._key(key, version): key for key in keys}

    # -- the fenced operations --------------------------------------------------------------------
    def get_or_set(self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None,
                   *, grace: float | None = None) -> Any:
        """Django's get_or_set, with the callable run once however many callers miss at once.

        ``grace`` overrides the alias's GRACE for this key. The callable may
        return :class:`~django_fence.envelope.Timed` to choose its own timeout.
        """
        compute = default if callable(default) else (lambda: default)
        inner = self.inner
        ttl = self._timeout(timeout, inner)
        if ttl is not None and ttl <= 0:  # Django: a timeout of 0 or less stores nothing
            existing = self.get(key, MISSING, version)
            return untimed(compute()) if existing is MISSING else existing
        return self._fence(inner).with_grace(grace).get_or_set(self._key(key, version, inner), compute, ttl)

    async def aget_or_set(self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT,
                          version: int | None = None, *, grace: float | None = None) -> Any:
        """``get_or_set`` for async code; ``default`` may be a value, a function or an async function."""
        compute = default if callable(default) else (lambda: default)
        ttl = self._timeout(timeout)
        if ttl is not None and ttl <= 0:
            existing = await self.aget(key, MISSING, version)
            if existing is not MISSING:
                return existing
            result = compute()
            return untimed(await result if inspect.isawaitable(result) else result)
        fence = self._fence if grace is None else (lambda: self._fence().with_grace(grace))
        return await aget_or_set(fence, self._key(key, version), compute, ttl)

    def put(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None, *,
            delta: float = 0.0, grace: float | None = None) -> None:
        """Store a value computed elsewhere as ``get_or_set`` stores one: soft expiry, grace, recompute time.

        Unlike ``set`` (a plain value, as Django writes it), the entry then
        expires softly: callers get it during the grace window while one
        refreshes, and XFetch refreshes it early by ``delta``. No lock is taken.
        """
        inner = self.inner
        ttl = self._timeout(timeout, inner)
        if ttl is not None and ttl <= 0:  # Django: a timeout of 0 or less stores nothing
            return
        fence = self._fence(inner).with_grace(grace)
        now = fence.clock()
        fenced_key = self._key(key, version, inner)
        if ttl is None:
            fence.store.set(fenced_key, Envelope(value, math.inf, delta, now), None)
        else:
            ttl = fence.jittered(ttl)
            fence.store.set(fenced_key, Envelope(value, now + ttl, delta, now), ttl + fence.opts.grace)

    def start(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None, *,
              grace: float | None = None, outdated: Callable[[Any], Step | None] | None = None) -> Run:
        """Begin a get-or-compute whose value the caller supplies later (``run.supply(value)``).

        For computations that are not one function call: the cache middleware
        pair starts the run in its fetch half and supplies the page in its
        update half. ``run.computing`` says whether this caller must supply
        the value (it holds the lock); otherwise ``run.value`` is the value.
        """
        inner = self.inner
        fence = self._fence(inner).with_grace(grace).with_outdated(outdated)
        return fence.start(self._key(key, version, inner), self._timeout(timeout, inner))

    async def astart(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None, *,
                     grace: float | None = None, outdated: Callable[[Any], Step | None] | None = None) -> ARun:
        """``start`` for async code."""
        if grace is None and outdated is None:
            fence: Callable[[], Fence] = self._fence
        else:
            fence = lambda: self._fence().with_grace(grace).with_outdated(outdated)  # noqa: E731
        return await astart(fence, self._key(key, version), self._timeout(timeout))

    def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Django's incr_version; an unnamespaced fence starts from the wrapped alias's VERSION."""
        if version is None:
            version = self.version if self._namespaced else self.inner.version
        return int(super().incr_version(key, delta, version))

    async def aincr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return int(await off_loop(self.incr_version, key, delta, version))

    async def adecr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return int(await off_loop(self.decr_version, key, delta, version))

    def mark_stale(self, key: Any, version: int | None = None) -> bool:
        """Soft invalidation: the next read refreshes once while the others get the old value.

        Returns False if the key holds no value. ``delete`` is the hard invalidation.
        """
        fenced_key = self._key(key, version)
        store = CacheStore(self.inner)
        store.bump_generation(fenced_key)
        entry = store.get(fenced_key)
        if entry is MISSING:
            return False
        now = self._fence().clock()
        delta = entry.delta if type(entry) is Envelope else 0.0
        stale = Envelope(unwrap(entry), now, delta, now)
        store.set(fenced_key, stale, self.options.grace + self.options.wait_timeout)
        return True

    async def amark_stale(self, key: Any, version: int | None = None) -> bool:
        return bool(await off_loop(self.mark_stale, key, version))

    def stats(self) -> dict[str, int]:
        """The fence's counters for this alias, summed across every process."""
        return self._stats().snapshot()

    async def astats(self) -> dict[str, int]:
        return dict(await off_loop(self.stats))

    def stats_history(self, minutes: int = HISTORY_MINUTES) -> list[tuple[int, dict[str, int]]]:
        """Hits, stale_served, misses and recomputes per minute for the last ``minutes`` (1-60), every process summed.

        Oldest first, ending with the current minute: (minute start in unix seconds, {name: count}).
        """
        return self._stats().history(minutes)

    async def astats_history(self, minutes: int = HISTORY_MINUTES) -> list[tuple[int, dict[str, int]]]:
        """``stats_history`` for async code (one worker-thread hop)."""
        return list(await off_loop(self.stats_history, minutes))

    def reset_stats(self) -> None:
        self._stats().reset()

    # -- plain delegation -------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        inner = self.inner
        k = self._key(key, version, inner)
        entry = inner.get(k.name, MISSING, version=k.version)
        return default if entry is MISSING else unwrap(entry)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        inner = self.inner
        k = self._key(key, version, inner)
        inner.set(k.name, value, self._timeout(timeout, inner), version=k.version)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        inner = self.inner
        k = self._key(key, version, inner)
        return bool(inner.add(k.name, value, self._timeout(timeout, inner), version=k.version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        inner = self.inner
        k = self._key(key, version, inner)
        return bool(inner.touch(k.name, self._timeout(timeout, inner), version=k.version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Hard invalidation; a recompute already running will not store its result."""
        k = self._key(key, version)
        CacheStore(self.inner).bump_generation(k)  # first: a recompute that reads after it won't store
        return bool(self.inner.delete(k.name, version=k.version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        k = self._key(key, version)
        return bool(self.inner.has_key(k.name, version=k.version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        k = self._key(key, version)
        return int(self.inner.incr(k.name, delta, version=k.version))

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        k = self._key(key, version)
        return int(self.inner.decr(k.name, delta, version=k.version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        fenced = self._keys(keys, version)
        if not fenced:
            return {}
        first = next(iter(fenced))
        found = self.inner.get_many([k.name for k in fenced], version=first.version)
        return {fenced[k]: unwrap(found[k.name]) for k in fenced if k.name in found}

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[Any]:
        fenced = self._keys(data, version)
        if not fenced:
            return []
        first = next(iter(fenced))
        by_name = {k.name: original for k, original in fenced.items()}
        failed = self.inner.set_many({k.name: data[original] for k, original in fenced.items()},
                                     self._timeout(timeout), version=first.version)
        return [by_name.get(name, name) for name in failed or []]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        fenced = self._keys(keys, version)
        if not fenced:
            return
        store = CacheStore(self.inner)
        for k in fenced:
            store.bump_generation(k)
        self.inner.delete_many([k.name for k in fenced], version=next(iter(fenced)).version)

    def clear(self) -> None:
        self.inner.clear()

    def close(self, **kwargs: Any) -> None:
        if self.target in caches.settings:  # Django closes every cache, even a misconfigured one
            self.inner.close(**kwargs)

    # -- async twins: one worker-thread hop each, never the single thread-sensitive executor ----
    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return await off_loop(self.get, key, default, version)

    async def aset(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        await off_loop(self.set, key, value, timeout, version)

    async def aadd(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return bool(await off_loop(self.add, key, value, timeout, version))

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return bool(await off_loop(self.touch, key, timeout, version))

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return bool(await off_loop(self.delete, key, version))

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return bool(await off_loop(self.has_key, key, version))

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return int(await off_loop(self.incr, key, delta, version))

    async def adecr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return int(await off_loop(self.decr, key, delta, version))

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return dict(await off_loop(self.get_many, list(keys), version))

    async def aset_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                        version: int | None = None) -> list[Any]:
        return list(await off_loop(self.set_many, data, timeout, version))

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await off_loop(self.delete_many, list(keys), version)

    async def aclear(self) -> None:
        await off_loop(self.clear)

    async def aclose(self, **kwargs: Any) -> None:
        await off_loop(lambda: self.close(**kwargs))
