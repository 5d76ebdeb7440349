"""The stampede algorithm: envelope, XFetch, lock, waiting and stale serving.

Nothing here knows about HTTP, templates or Django's cache API. The
decisions are pure functions of (envelope, now, options, random draw), tested
with a fixed clock; :class:`Fence` does the I/O through a store and a lock
strategy (store.py, locks.py), and the async driver reuses the same code.

References: XFetch is "Optimal Probabilistic Cache Stampede Prevention",
Vattani, Chierichetti, Lowenstein, VLDB 2015: a caller refreshes early when
``now - delta * beta * ln(rand()) >= expiry``, where delta is the measured
recompute time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import inspect
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from .conf import FenceOptions
from .exceptions import BackendUnavailable
from .locks import Watch
from .store import MISSING, Key

logger = logging.getLogger(__name__)


class Envelope(NamedTuple):
    """What ``get_or_set`` stores: the value and what XFetch needs, in ONE entry.

    A NamedTuple, not a dataclass: it unpickles through its constructor, while a
    frozen dataclass's ``__setstate__`` costs microseconds on every cache hit.
    """

    value: Any
    #: Wall-clock time after which the value is stale (inf: never).
    soft_expiry: float
    #: Seconds the recompute that produced ``value`` took.
    delta: float
    #: Wall-clock time the value was stored.
    stored_at: float


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


def _same_entry(a: Any, b: Any) -> bool:
    """Whether two reads saw the same write (compared by identity, never by value)."""
    if type(a) is Envelope and type(b) is Envelope:
        return a.stored_at == b.stored_at and a.soft_expiry == b.soft_expiry
    return a is b


def unwrap(entry: Any) -> Any:
    return entry.value if type(entry) is Envelope else entry


class FenceReentryError(RuntimeError):
    """A recompute asked for its own key; waiting for itself would hang forever."""


class Store(Protocol):
    def get(self, key: Key) -> Any: ...
    def set(self, key: Key, value: Any, ttl: float | None) -> None: ...
    def add(self, key: Key, value: Any, ttl: float | None) -> bool: ...
    def value_and_generation(self, key: Key) -> tuple[Any, int | None]: ...


class Lock(Protocol):
    notifies: bool

    def acquire(self, key: Key, token: str, ttl: float, expected_end: float) -> bool: ...
    def release(self, key: Key, token: str) -> bool: ...
    def watch(self, key: Key) -> Any: ...  # a context manager yielding a Watch
    def wait(self, key: Key, watch: Watch, timeout: float) -> None: ...


class Counts(Protocol):
    def add(self, name: str, amount: int = 1) -> None: ...


_computing: contextvars.ContextVar[frozenset[Key]] = contextvars.ContextVar("fence_computing", default=frozenset())


class Flights:
    """In-process single-flight: one computation per key, shared by threads and tasks."""

    def __init__(self) -> None:
        self._flights: dict[Key, concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()

    def join(self, key: Key) -> tuple[concurrent.futures.Future[Any], bool]:
        """The key's flight and whether the caller leads it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = concurrent.futures.Future()
            return flight, True

    def get(self, key: Key) -> concurrent.futures.Future[Any] | None:
        return self._flights.get(key)

    def land(self, key: Key, flight: concurrent.futures.Future[Any], run: Callable[[], Any]) -> Any:
        """Run the leader's work and hand its outcome to every follower."""
        try:
            result = run()
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            with self._lock:
                self._flights.pop(key, None)


class Fence:
    """Stampede-proof get-or-compute over one store and one lock strategy."""

    def __init__(self, name: str, store: Store, lock: Lock, opts: FenceOptions, stats: Counts,
                 clock: Callable[[], float] = time.time, draw: Callable[[], float] = random.random) -> None:
        self.name, self.store, self.lock, self.opts, self.stats = name, store, lock, opts, stats
        self.clock = clock
        self._draw = draw
        self.flights = Flights()

    def draw(self) -> float:
        return 1.0 - self._draw()  # random() is in [0, 1); log() needs (0, 1]

    # -- the sync driver ------------------------------------------------------------------------
    def get_or_set(self, key: Key, compute: Callable[[], Any], timeout: float | None) -> Any:
        """The value of ``key``; ``compute()`` runs once across processes when it must."""
        if key in _computing.get():
            raise FenceReentryError(f"the recompute of {key} asked for {key} itself")
        try:
            entry = self.store.get(key)
        except BackendUnavailable:
            return self._fail_open(key, compute)
        step = decide(entry, self.clock(), self.opts, self.draw())
        if step is Step.HIT:
            self.stats.add("hits")
            return unwrap(entry)
        flight, leader = self.flights.join(key)
        if not leader:
            if step is Step.MISS:
                self.stats.add("lock_waits")
                return flight.result()
            self.stats.add("stale_served" if step is Step.STALE else "hits")
            return unwrap(entry)
        self.stats.add({Step.MISS: "misses", Step.STALE: "stale_served", Step.EARLY: "early_refreshes"}[step])
        return self.flights.land(key, flight, lambda: self._lead(key, compute, timeout, entry, step))

    def _lead(self, key: Key, compute: Callable[[], Any], timeout: float | None, entry: Any, step: Step) -> Any:
        try:
            return self._lock_and_compute(key, compute, timeout, entry, step)
        except BackendUnavailable:
            return self._fail_open(key, compute, in_flight=True)

    def _lock_and_compute(self, key: Key, compute: Callable[[], Any], timeout: float | None,
                          entry: Any, step: Step) -> Any:
        deadline = time.monotonic() + self.opts.wait_timeout
        previous = entry if type(entry) is Envelope else None
        with self.lock.watch(key) as watch:
            while True:
                token = uuid.uuid4().hex
                expected = self.clock() + (previous.delta if previous else 0.0)
                if self.lock.acquire(key, token, self.opts.lock_timeout, expected):
                    return self._compute_locked(key, compute, timeout, entry, token)
                if step is not Step.MISS:
                    return unwrap(entry)  # someone else refreshes; serve what we have at once
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._take_over(key, compute, timeout, entry)
                # Never sleep past a quarter lease: a holder that died without releasing (no wake-up
                # comes) is noticed when its lock expires, within LOCK_TIMEOUT (dogpile.cache #261).
                self.lock.wait(key, watch, min(remaining, self.opts.lock_timeout / 4))
                current = self.store.get(key)
                if current is not MISSING and decide(current, self.clock(), self.opts, 1.0) is not Step.MISS:
                    return unwrap(current)

    def _compute_locked(self, key: Key, compute: Callable[[], Any], timeout: float | None,
                        seen: Any, token: str) -> Any:
        try:
            # Double-check under the lock: the value may have landed since we looked.
            current, generation = self.store.value_and_generation(key)
            fresh = current is not MISSING and decide(current, self.clock(), self.opts, 1.0) is not Step.MISS
            if fresh and not _same_entry(current, seen):
                return unwrap(current)
            started = self.clock()
            try:
                value, delta = self._run(key, compute)
            except Exception:
                if seen is MISSING:
                    raise
                self.stats.add("errors")
                logger.error("fence %s: recompute of %s failed; serving the stale value", self.name, key,
                             exc_info=True)
                return unwrap(seen)
            self._store(key, value, timeout, delta, generation, started)
            return value
        finally:
            try:
                self.lock.release(key, token)
            except BackendUnavailable:
                logger.warning("fence %s: could not release the lock of %s", self.name, key, exc_info=True)

    def _store(self, key: Key, value: Any, timeout: float | None, delta: float, generation: int | None,
               started: float) -> None:
        """Store a fresh envelope unless ``key`` was invalidated, or stored anew, while we computed."""
        try:
            current, generation_now = self.store.value_and_generation(key)
            if generation_now != generation:
                logger.debug("fence %s: %s was invalidated during its recompute; not storing", self.name, key)
                return
            if type(current) is Envelope and current.stored_at > started:
                # Our lease ran out and a successor stored a newer value: do not clobber it.
                logger.debug("fence %s: %s was stored by a newer recompute; not storing", self.name, key)
                return
            self.store.set(key, *self._envelope(value, timeout, delta))
        except BackendUnavailable:
            self.stats.add("errors")
            logger.warning("fence %s: could not store %s", self.name, key, exc_info=True)

    def _envelope(self, value: Any, timeout: float | None, delta: float) -> tuple[Envelope, float | None]:
        now = self.clock()
        if timeout is None:
            return Envelope(value, math.inf, delta, now), None
        return Envelope(value, now + timeout, delta, now), timeout + self.opts.grace

    def _take_over(self, key: Key, compute: Callable[[], Any], timeout: float | None, entry: Any) -> Any:
        """The wait reached WAIT_TIMEOUT: serve stale if any, else this process computes."""
        self.stats.add("wait_timeouts")
        if entry is not MISSING:
            return unwrap(entry)
        logger.warning("fence %s: waited %.1fs for %s; computing it here", self.name, self.opts.wait_timeout, key)
        value, delta = self._run(key, compute)
        try:
            self.store.add(key, *self._envelope(value, timeout, delta))
        except BackendUnavailable:
            logger.warning("fence %s: could not store %s", self.name, key, exc_info=True)
        return value

    def _run(self, key: Key, compute: Callable[[], Any]) -> tuple[Any, float]:
        """Run the user's callable, marked as computing ``key`` (re-entry detection)."""
        reset = _computing.set(_computing.get() | {key})
        started = time.monotonic()
        try:
            value = compute()
        finally:
            _computing.reset(reset)
        self.stats.add("recomputes")
        return value, time.monotonic() - started

    def _fail_open(self, key: Key, compute: Callable[[], Any], in_flight: bool = False) -> Any:
        """The backend is unreachable: compute without the distributed lock, once per process."""
        self.stats.add("errors")
        logger.warning("fence %s: backend unavailable, computing %s without the lock", self.name, key,
                       exc_info=True)
        if in_flight:  # we already lead this key's flight
            return self._run(key, compute)[0]
        flight, leader = self.flights.join(key)
        if not leader:
            return flight.result()
        return self.flights.land(key, flight, lambda: self._run(key, compute)[0])


# -- the async driver ----------------------------------------------------------------------------
async def aget_or_set(fence: Callable[[], Fence], flights: Flights, key: Key, compute: Callable[[], Any],
                      timeout: float | None) -> Any:
    """``Fence.get_or_set`` for async code; ``compute`` may be sync or async.

    ``fence`` returns the calling thread's Fence: its store and lock hold the
    thread's own cache client, so the work must resolve it in the worker
    thread. Waiting on another caller's computation is an await on the shared
    flight, never a blocked thread; only the lead caller's lock, wait and
    I/O run in a worker, and an async ``compute`` runs on this event loop.
    """
    flight = flights.get(key)
    if flight is not None and key not in _computing.get():
        return await asyncio.shield(asyncio.wrap_future(flight))
    on_loop = _on_loop(compute, asyncio.get_running_loop())
    return await off_loop(lambda: fence().get_or_set(key, on_loop, timeout))


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def _io_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor, _executor_pid
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="fence-io")
            _executor_pid = os.getpid()
        return _executor


async def off_loop(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking cache I/O in a fence worker thread and await it.

    Not ``asyncio.to_thread``: that runs the call in a copy of the caller's
    context, and Django's ``caches`` are context-local, so every worker would
    share the event loop thread's cache instance (one pylibmc client used by
    many threads at once). Here each worker thread has its own instances, and
    the only context carried over is the re-entry mark. Nor Django's default
    ``sync_to_async(thread_sensitive=True)``, which queues every async cache
    call of the process on one thread.
    """
    marks = _computing.get()

    def call() -> Any:
        reset = _computing.set(marks)
        try:
            return function(*args)
        finally:
            _computing.reset(reset)

    return await asyncio.get_running_loop().run_in_executor(_io_executor(), call)


def _on_loop(compute: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> Callable[[], Any]:
    """A sync callable that runs an async ``compute`` on ``loop`` from a worker thread."""

    def run() -> Any:
        result = compute()
        if not inspect.isawaitable(result):
            return result
        context = contextvars.copy_context()  # keeps the re-entry mark for the coroutine

        async def awaited() -> Any:
            return await result

        return asyncio.run_coroutine_threadsafe(_in_context(context, awaited), loop).result()

    return run


async def _in_context(context: contextvars.Context, factory: Callable[[], Any]) -> Any:
    task = asyncio.get_running_loop().create_task(factory(), context=context)
    return await task
