"""Distributed locks and wake-ups for the fence, one strategy per kind of server.

* :class:`RedisLock` talks to the wrapped cache's own redis-py client: the lock
  is ``SET NX PX``, the release is one Lua script that deletes the lock only if
  it still holds our token and publishes a wake-up, and waiters of a process
  are woken by one pattern subscription per process (no polling).
* :class:`MemcachedLock` talks to the wrapped cache's pylibmc or pymemcache
  client: ``add`` to take, ``gets``/``cas`` to release only what we own
  (memcached has no compare-and-delete, so a released lock becomes a one-second
  tombstone that the next ``acquire`` may overwrite by CAS).
* :class:`CacheLock` works on any Django cache through ``add``/``get``/``delete``
  (LocMem, the database cache, ...).

Memcached and the generic cache cannot notify, so there the lock entry carries
when its holder expects to finish (its last measured recompute time): a waiter
sleeps until then and only then checks at a short, growing interval.

This is an adapter module: it turns each client's "server unavailable"
exceptions into :class:`BackendUnavailable`, the only kind the engine sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.base import BaseCache

from .counters import redis_client_of
from .exceptions import BackendUnavailable, translated
from .store import MISSING, Key

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ":fence-lock"
TOMBSTONE = "released"


def lock_value(token: str, expected_end: float) -> str:
    return f"{token}|{expected_end:.6f}"


def parse_lock_value(value: Any) -> tuple[str | None, float | None]:
    """(token, expected finish as a wall-clock time) of a stored lock entry."""
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or value == TOMBSTONE:
        return None, None
    token, _, end = value.partition("|")
    try:
        return token, float(end)
    except ValueError:
        return token, None


class Watch:
    """A registration to be woken when the lock of one key is released, by threads or tasks."""

    def __init__(self, close: Callable[[], None] | None = None) -> None:
        self.event = threading.Event()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()
        self._close = close
        #: Pacing of waiters that cannot be woken: checks made, and when the holder expected to finish.
        self.checks = 0
        self.since = 0.0

    def wake(self) -> None:
        with self._lock:
            self.event.set()
            for loop, future in self._futures:
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, timeout: float) -> None:
        """Block until woken (or ``timeout``); consumes the wake-up."""
        self.event.wait(max(0.0, timeout))
        self.event.clear()

    async def await_wake(self, timeout: float) -> None:
        """``wait`` for a task: an asyncio future resolved from the listener thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.event.is_set():
                self.event.clear()
                return
            self._futures.append((loop, future))
        try:
            await asyncio.wait_for(future, max(0.0, timeout))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._futures.remove((loop, future))
                self.event.clear()

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CacheLock:
    """A lock on any Django cache: ``add`` takes it, release deletes it if still ours.

    The compare and the delete are two calls, so a lease that ran out between
    them could delete a successor's lock; backends with an atomic
    compare-and-delete (Redis, memcached) have their own strategy below.
    """

    notifies = False

    def __init__(self, cache: BaseCache, check_interval: float = 0.005) -> None:
        self.cache = cache
        self.check_interval = check_interval

    def acquire(self, key: Key, token: str, ttl: float, expected_end: float) -> bool:
        lock = key.derived(LOCK_SUFFIX)
        with translated("lock acquire"):
            return bool(self.cache.add(lock.name, lock_value(token, expected_end), _ttl(ttl), version=lock.version))

    def release(self, key: Key, token: str, wake: Key | None = None) -> bool:
        lock = key.derived(LOCK_SUFFIX)
        with translated("lock release"):
            if parse_lock_value(self._read_lock(key))[0] != token:
                return False
            self.cache.delete(lock.name, version=lock.version)
            return True

    def _read_lock(self, key: Key) -> Any:
        lock = key.derived(LOCK_SUFFIX)
        return self.cache.get(lock.name, version=lock.version)

    def open_watch(self, key: Key) -> Watch:
        return Watch()

    def peek(self, key: Key) -> tuple[Any, bool]:
        """(the key's entry or MISSING, whether its lock is held), in one round trip."""
        lock = key.derived(LOCK_SUFFIX)
        with translated("peek"):
            found = self.cache.get_many([key.name, lock.name], version=key.version)
        return found.get(key.name, MISSING), parse_lock_value(found.get(lock.name))[0] is not None

    def pause(self, key: Key, watch: Watch, limit: float) -> float:
        """How long to sleep before the next check (at most ``limit``).

        The first call reads when the holder expects to finish (its last
        measured recompute time), and the waiter sleeps until then. Then it
        checks every CHECK_INTERVAL for 20 intervals, as the value is due;
        after that the pause is a quarter of how late the holder is: the value
        is noticed within ~25% of the wait, and a long recompute costs O(log)
        checks, not one every few milliseconds (cashews #333).
        """
        now = time.time()
        if watch.checks == 0:
            with translated("lock read"):
                end = parse_lock_value(self._read_lock(key))[1]
            watch.since = end or now
            pause = watch.since - now
        elif now - watch.since < 20 * self.check_interval:
            pause = self.check_interval  # the holder is due: check closely for a little while
        else:
            pause = (now - watch.since) / 4
        watch.checks += 1
        return max(0.0, min(max(pause, self.check_interval), limit))


class MemcachedLock(CacheLock):
    """``add`` to take the lock, ``gets``/``cas`` so a release never deletes another's lock."""

    def __init__(self, cache: BaseCache, check_interval: float = 0.005) -> None:
        super().__init__(cache, check_interval)
        self.client: Any = cache._cache  # type: ignore[attr-defined]  # the pylibmc/pymemcache client
        behaviors = getattr(self.client, "behaviors", None)
        if behaviors is not None and not behaviors.get("cas"):
            self.client.set_behaviors({"cas": True})  # pylibmc answers gets() only with CAS on

    def _raw(self, key: Key) -> str:
        return self.cache.make_and_validate_key(key.name + LOCK_SUFFIX, key.version)

    def acquire(self, key: Key, token: str, ttl: float, expected_end: float) -> bool:
        raw, value = self._raw(key), lock_value(token, expected_end)
        with translated("lock acquire"):
            for _ in range(2):
                if self._add(raw, value, _ttl(ttl)):
                    return True
                # A released lock is a tombstone until it expires; take it over by CAS.
                current, cas = self._gets(raw)
                if current == TOMBSTONE and cas is not None:
                    return bool(self.client.cas(raw, value, cas, _ttl(ttl)))
                if current is not None:
                    return False  # held
                # The tombstone expired between add and gets: add again.
            return False

    def _add(self, raw: str, value: str, ttl: int) -> bool:
        """``add``, tried once more when pylibmc could not even open a socket (nothing reached the server).

        Any other error may come after the server took the lock, so it is not retried.
        """
        try:
            return bool(self.client.add(raw, value, ttl))
        except Exception as exc:
            if type(exc).__name__ != "SocketCreateError":
                raise
            time.sleep(0.01)
            return bool(self.client.add(raw, value, ttl))

    def release(self, key: Key, token: str, wake: Key | None = None) -> bool:
        raw = self._raw(key)
        with translated("lock release"):
            current, cas = self._gets(raw)
            if cas is None or parse_lock_value(current)[0] != token:
                return False
            # memcached has no compare-and-delete: CAS-replace with a short tombstone.
            return bool(self.client.cas(raw, TOMBSTONE, cas, 1))

    def _read_lock(self, key: Key) -> Any:
        return self.client.get(self._raw(key))

    def _gets(self, raw: str) -> tuple[Any, Any]:
        found = self.client.gets(raw)  # pylibmc answers None for a missing key, pymemcache (None, None)
        return (None, None) if found is None else found


_RELEASE_SCRIPT = """
-- release: delete the lock if it still holds our token, and then wake the waiters.
-- KEYS[1] lock key; ARGV[1] our token, ARGV[2] wake-up channel. Returns 1 if deleted. O(1)
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', ARGV[2], '1')
  return 1
end
return 0
"""

CHANNEL_PREFIX = "fence-wake:"


class RedisLock:
    """A Redis lock whose release wakes every waiter at once (Lua + pub/sub)."""

    notifies = True

    def __init__(self, cache: BaseCache, client: Any) -> None:
        self.cache = cache
        self.client = client
        self._release = client.register_script(_RELEASE_SCRIPT)

    def _raw(self, key: Key) -> str:
        return str(self.cache.make_key(key.name + LOCK_SUFFIX, key.version))

    def acquire(self, key: Key, token: str, ttl: float, expected_end: float) -> bool:
        with translated("lock acquire"):
            return bool(self.client.set(self._raw(key), token, nx=True, px=max(1, int(ttl * 1000))))

    def release(self, key: Key, token: str, wake: Key | None = None) -> bool:
        """Compare-and-delete; wakes the waiters of ``wake`` (default: of ``key``)."""
        raw = self._raw(key)
        channel = CHANNEL_PREFIX + self._raw(wake or key)
        with translated("lock release"):
            return bool(self._release(keys=[raw], args=[token, channel]))

    def open_watch(self, key: Key) -> Watch:
        """Register for the wake-up before looking at the lock, so none is lost."""
        listener = _listener_for(self.client)
        channel = CHANNEL_PREFIX + self._raw(key)
        watch = Watch(close=lambda: listener.unregister(channel, watch))
        listener.register(channel, watch)
        return watch

    def pause(self, key: Key, watch: Watch, limit: float) -> float:
        return limit  # waiters are woken; they never pace themselves

    def peek(self, key: Key) -> tuple[Any, bool]:
        raise NotImplementedError("Redis waiters are woken; they do not peek")


class _Listener:
    """One pattern subscription per process and Redis server, fanning wake-ups out to threads."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pid = os.getpid()
        self.watches: dict[str, set[Watch]] = defaultdict(set)
        self.lock = threading.Lock()
        self.alive = False
        self.start()

    def start(self) -> None:
        with translated("subscribe"):
            pubsub = self.client.pubsub()
            pubsub.psubscribe(CHANNEL_PREFIX + "*")
            # Wait for the confirmation: from here on no publish can be missed.
            deadline = time.monotonic() + 5
            while pubsub.get_message(timeout=0.5) is None:
                if time.monotonic() > deadline:
                    pubsub.close()
                    raise BackendUnavailable("subscribe: no confirmation within 5 s")
        self.alive = True
        threading.Thread(target=self._run, args=(pubsub,), daemon=True, name="fence-wakeups").start()

    def _run(self, pubsub: Any) -> None:
        try:
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message and message["type"] == "pmessage":
                    channel = message["channel"]
                    self._wake(channel.decode() if isinstance(channel, bytes) else channel)
        except Exception:
            logger.warning("fence: wake-up subscription lost; waiters fall back to their deadline",
                           exc_info=True)
        finally:
            self.alive = False
            with contextlib.suppress(Exception):
                pubsub.close()
            with self.lock:  # wake everyone: they re-check and find out for themselves
                for watches in self.watches.values():
                    for watch in watches:
                        watch.wake()

    def _wake(self, channel: str) -> None:
        with self.lock:
            for watch in self.watches.get(channel, ()):
                watch.wake()

    def register(self, channel: str, watch: Watch) -> None:
        with self.lock:
            self.watches[channel].add(watch)

    def unregister(self, channel: str, watch: Watch) -> None:
        with self.lock:
            watches = self.watches.get(channel)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self.watches[channel]


_listeners: dict[tuple[Any, ...], _Listener] = {}
_listeners_lock = threading.Lock()


def _listener_for(client: Any) -> _Listener:
    # Keyed by server, not by client object: Django makes a cache (and its pool) per thread.
    kwargs = client.connection_pool.connection_kwargs
    key = (kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), kwargs.get("db"))
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None or not listener.alive or listener.pid != os.getpid():
            listener = _listeners[key] = _Listener(client)
        return listener


def _ttl(seconds: float) -> int:
    """Whole seconds for add/set: memcached and Django's timeouts are integers."""
    return max(1, int(seconds + 0.999))


def lock_for(cache: BaseCache, check_interval: float) -> CacheLock | RedisLock:
    """The best lock strategy for the wrapped cache ``cache``."""
    client = redis_client_of(cache)
    if client is not None:
        return RedisLock(cache, client)
    if type(cache).__module__ == "django.core.cache.backends.memcached":
        return MemcachedLock(cache, check_interval)
    return CacheLock(cache, check_interval)
