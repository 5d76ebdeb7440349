"""The stampede algorithm: lock, waiting, take-over, stale serving, fail-open.

Nothing here knows about HTTP, templates or Django's cache API. The
algorithm is one generator (:meth:`Fence.steps`) that yields the I/O it needs
as small operations (ops.py); the sync driver here and the async driver in
aio.py carry them out, so there is one algorithm and two thin drivers (the
sans-I/O style of h11). The decisions on an entry are in envelope.py.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from .conf import FenceOptions
from .envelope import Envelope, Step, Timed, decide, same_entry, untimed, unwrap
from .exceptions import BackendUnavailable
from .flights import (
    Abandoned,
    Carried,
    Deltas,
    Flights,
    FlightTimeout,
    LeaderCancelled,
    _computing,
    carry,
    computing,
    reset_computing,
)
from .locks import Watch
from .ops import Call, Compute, Counts, Follow, Lock, Op, Sleep, Steps, Store, Wake
from .store import MISSING, Key

__all__ = ["UNREACHABLE", "Envelope", "Fence", "FenceReentryError", "Step", "decide", "unwrap"]

logger = logging.getLogger(__name__)

TAKEOVER_SUFFIX = ":fence-takeover"
UNREACHABLE = object()  # what the first read "returned" when the backend could not be reached


class FenceReentryError(RuntimeError):
    """A recompute asked for its own key; waiting for itself would hang forever."""


class Fence:
    """Stampede-proof get-or-compute over one store and one lock strategy."""

    def __init__(self, name: str, store: Store, lock: Lock, opts: FenceOptions, stats: Counts, flights: Flights,
                 deltas: Deltas | None = None, clock: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random) -> None:
        self.name, self.store, self.lock, self.opts, self.stats = name, store, lock, opts, stats
        self.flights = flights
        self.deltas = Deltas() if deltas is None else deltas
        self.clock = clock
        self._draw = draw
        self.outdated: Callable[[Any], Step | None] | None = None

    def with_grace(self, grace: float | None) -> Fence:
        """This fence with another grace window (a per-call GRACE, as the page decorator takes)."""
        if grace is None or grace == self.opts.grace:
            return self
        other = copy.copy(self)
        other.opts = dataclasses.replace(self.opts, grace=float(grace))
        return other

    def with_outdated(self, outdated: Callable[[Any], Step | None] | None) -> Fence:
        """This fence with a caller's own test of its values (the page layer's per-URL generations).

        ``outdated(value)`` returns Step.STALE (serve it while one caller
        refreshes), Step.MISS (do not serve it) or None (as its expiry says).
        """
        if outdated is None:
            return self
        other = copy.copy(self)
        other.outdated = outdated
        return other

    def decide(self, entry: Any, draw: float) -> Step:
        """What to do with an entry: its expiry (envelope.decide), then the caller's own test."""
        step = decide(entry, self.clock(), self.opts, draw)
        if self.outdated is not None and step in (Step.HIT, Step.EARLY) and entry is not MISSING:
            return self.outdated(unwrap(entry)) or step
        return step

    def jittered(self, timeout: float) -> float:
        """``timeout`` spread by JITTER (uniform in timeout x [1 - JITTER, 1 + JITTER])."""
        if not self.opts.jitter:
            return timeout
        return timeout * (1 + self.opts.jitter * (2 * self._draw() - 1))

    def draw(self) -> float:
        return 1.0 - self._draw()  # random() is in [0, 1); log() needs (0, 1]

    def servable(self, entry: Any) -> bool:
        """Whether ``entry`` may be served: present, and fresh or inside its grace window."""
        return entry is not MISSING and self.decide(entry, 1.0) is not Step.MISS

    # -- the sync driver ------------------------------------------------------------------------------
    def get_or_set(self, key: Key, compute: Callable[[], Any], timeout: float | None) -> Any:
        """The value of ``key``; ``compute()`` runs once across processes when it must."""
        run = self.start(key, timeout)
        while run.computing:
            token = computing(key)
            try:
                value = compute()
            except BaseException as exc:
                reset_computing(token)
                run.fail(exc)
                continue
            reset_computing(token)
            run.supply(value)
        return run.value

    def start(self, key: Key, timeout: float | None) -> Run:
        """Begin a get-or-compute that stops where the value must be computed (see :class:`Run`)."""
        self.check_reentry(key)
        try:  # the hit path stays outside the generator: one read, one decision
            entry = self.store.get(key)
        except BackendUnavailable:
            entry = UNREACHABLE
        value, steps = self.begin(key, timeout, entry)
        return Run(self, steps, value)

    def abandon(self, steps: Steps) -> None:
        """Run what a closed driver leaves to clean up (lock releases), with blocking calls."""
        try:
            op = steps.throw(Abandoned())
            while True:
                if type(op) is not Call:
                    op = steps.throw(Abandoned())
                    continue
                try:
                    result = self._do(op)
                except BaseException as exc:
                    op = steps.throw(exc)
                else:
                    op = steps.send(result)
        except BaseException:
            return

    def _do(self, op: Op) -> Any:
        if type(op) is Call:
            return getattr(getattr(self, op.target), op.method)(*op.args)
        if type(op) is Sleep:
            return time.sleep(op.seconds)
        if type(op) is Wake:
            return op.watch.wait(op.timeout)
        assert type(op) is Follow
        # Not flight.result(timeout): the leader's own TimeoutError would read as ours (3.11+).
        done, _ = concurrent.futures.wait([op.flight], op.timeout)
        if not done:
            raise FlightTimeout
        return op.flight.result()

    def computed(self, started: float) -> float:
        """Count a recompute that began at ``started`` (monotonic); return how long it took."""
        elapsed = time.monotonic() - started
        self.stats.add("recomputes")
        self.stats.add("recompute_microseconds", int(elapsed * 1_000_000))
        return elapsed

    # -- the algorithm --------------------------------------------------------------------------------
    def check_reentry(self, key: Key) -> None:
        if key in _computing.get():
            raise FenceReentryError(f"the recompute of {key} asked for {key} itself")

    def look(self, key: Key, entry: Any) -> Step:
        """Decide what to do with what the first read returned (a hit is counted here)."""
        step = self.decide(entry, self.draw())
        self.deltas.learn(key, entry)
        if step is Step.HIT:
            self.stats.add("hits")
        return step

    def begin(self, key: Key, timeout: float | None, entry: Any) -> tuple[Any, Steps | None]:
        """After the first read (UNREACHABLE if it failed): the value on a hit, else the steps to run."""
        if entry is UNREACHABLE:
            return None, self._fail_open(key)
        step = self.look(key, entry)
        if step is Step.HIT:
            return unwrap(entry), None
        return None, self.steps(key, timeout, entry, step)

    def steps(self, key: Key, timeout: float | None, entry: Any, step: Step) -> Steps:
        """Everything ``get_or_set`` does after a first read that was not a hit, as operations."""
        flight, leader = self.flights.join(key)
        if leader:
            if step is Step.MISS:
                self.stats.add("misses")
            return (yield from self.flights.land(key, flight, self._lead(key, timeout, entry, step)))
        if step is not Step.MISS:  # someone in this process refreshes; serve what we have at once
            self.stats.add("stale_served" if step is Step.STALE else "hits")
            return unwrap(entry)
        self.stats.add("lock_waits")
        try:
            return (yield from self._follow(key, timeout, flight, self.opts.wait_timeout))
        except FlightTimeout:
            return (yield from self._take_over_in_process(key, timeout, entry))

    def _follow(self, key: Key, timeout: float | None, flight: Any, limit: float | None) -> Steps:
        """Wait for this process's flight; if its leader was cancelled, start over."""
        try:
            return (yield Follow(flight, limit))
        except LeaderCancelled:
            return (yield from self._again(key, timeout))

    def _again(self, key: Key, timeout: float | None) -> Steps:
        """Start over: the leader we followed was cancelled."""
        try:
            entry = yield Call("store", "get", (key,))
        except BackendUnavailable:
            entry = UNREACHABLE
        value, steps = self.begin(key, timeout, entry)
        return value if steps is None else (yield from steps)

    def _lead(self, key: Key, timeout: float | None, entry: Any, step: Step) -> Steps:
        try:
            return (yield from self._lock_and_compute(key, timeout, entry, step))
        except BackendUnavailable:
            return (yield from self._fail_open(key, in_flight=True))

    def _lock_and_compute(self, key: Key, timeout: float | None, entry: Any, step: Step) -> Steps:
        deadline = time.monotonic() + self.opts.wait_timeout
        expected = self.deltas.get(key, 0.0)  # the last measured recompute: waiters sleep until then
        watch = yield Call("lock", "open_watch", (key,))  # before the lock: no wake-up can be missed
        try:
            while True:
                token = uuid.uuid4().hex
                if (yield Call("lock", "acquire", (key, token, self.opts.lock_timeout, self.clock() + expected))):
                    if step is Step.EARLY:
                        self.stats.add("early_refreshes")
                    return (yield from self._compute_locked(key, timeout, entry, token, key))
                if step is not Step.MISS:  # another process refreshes; serve what we have at once
                    self.stats.add("stale_served" if step is Step.STALE else "hits")
                    return unwrap(entry)
                held: bool | None = True
                while held is not False:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return (yield from self._take_over_in_process(key, timeout, entry))
                    current, held = yield from self._wait(key, watch, remaining)
                    self.deltas.learn(key, current)
                    if self.servable(current):
                        return unwrap(current)
                    if held is None:
                        break  # woken without a value: the lock was released, try to take it
        finally:
            watch.close()

    def _wait(self, key: Key, watch: Watch, remaining: float, holder: Key | None = None) -> Steps:
        """Wait for a wake-up or the next check; return (what the key holds, whether it is locked).

        ``holder`` is the key whose lock entry says when to check (the take-over lock while
        waiting for the waiter that took over); by default ``key``'s own.
        """
        # Never past a quarter lease: a holder that died without releasing (no wake-up comes) is
        # noticed when its lock expires, within LOCK_TIMEOUT (dogpile.cache #261).
        limit = min(remaining, self.opts.lock_timeout / 4)
        if self.lock.notifies:
            yield Wake(watch, limit)
            return (yield Call("store", "get_primary", (key,))), None
        yield Sleep((yield Call("lock", "pause", (holder or key, watch, limit))))
        return (yield Call("lock", "peek", (key,)))

    def _compute_locked(self, key: Key, timeout: float | None, seen: Any, token: str, lock: Key) -> Steps:
        try:
            # Double-check under the lock: the value may have landed since we looked.
            current, generation = yield Call("store", "value_and_generation", (key,))
            if self.servable(current) and not same_entry(current, seen):
                return unwrap(current)
            try:
                value, delta = yield Compute(key)
            except Exception:
                if not self.servable(seen):
                    raise
                self.stats.add("errors")
                self.stats.add("stale_served")
                logger.error("fence %s: recompute of %s failed; serving the stale value", self.name, key,
                             exc_info=True)
                return unwrap(seen)
            self.deltas.remember(key, delta)
            yield from self._store(key, value, timeout, delta, generation, current)
            return untimed(value)
        finally:
            try:
                yield Call("lock", "release", (lock, token, key))
            except BackendUnavailable:
                logger.warning("fence %s: could not release the lock of %s", self.name, key, exc_info=True)

    def _store(self, key: Key, value: Any, timeout: float | None, delta: float, generation: int | None,
               before: Any) -> Steps:
        """Store a fresh envelope unless ``key`` was invalidated or written while we computed."""
        grace = self.opts.grace
        over_stale = True
        if type(value) is Timed:  # the computation chose its timeout
            timed = value
            value, timeout, over_stale = timed.value, timed.timeout, timed.over_stale
            grace = grace if timed.grace else 0.0
            delta = delta if timed.delta is None else timed.delta
        try:
            current, generation_now = yield Call("store", "value_and_generation", (key,))
            if generation_now != generation or (current is not MISSING and not same_entry(current, before)):
                # delete()/mark_stale() ran (cacheops #302), or a set() or a successor whose lease began
                # after ours ran out wrote a newer value: ours must not clobber it.
                logger.debug("fence %s: %s changed during its recompute; not storing", self.name, key)
                return
            if not over_stale and self.servable(current):
                return  # a marker that only releases the waiters: the value still served stays
            now = self.clock()
            if timeout is None:
                yield Call("store", "set", (key, Envelope(value, math.inf, delta, now), None))
            else:
                timeout = self.jittered(timeout)
                yield Call("store", "set", (key, Envelope(value, now + timeout, delta, now), timeout + grace))
        except BackendUnavailable:
            self.stats.add("errors")
            logger.warning("fence %s: could not store %s", self.name, key, exc_info=True)

    def _take_over(self, key: Key, timeout: float | None, entry: Any) -> Steps:
        """The wait reached WAIT_TIMEOUT: serve stale if there is any, else one waiter takes over.

        The take-over lock picks one waiter across processes; the others wait
        for its value, and take over themselves only if its lease runs out.
        """
        self.stats.add("wait_timeouts")
        if self.servable(entry):
            self.stats.add("stale_served")
            return unwrap(entry)
        takeover = key.derived(TAKEOVER_SUFFIX)
        deadline = time.monotonic() + self.opts.lock_timeout
        watch = yield Call("lock", "open_watch", (key,))
        try:
            while True:
                token = uuid.uuid4().hex
                expected = self.clock() + self.deltas.get(key, 0.0)
                if (yield Call("lock", "acquire", (takeover, token, self.opts.lock_timeout, expected))):
                    logger.warning("fence %s: waited %.1fs for %s; taking over", self.name,
                                   self.opts.wait_timeout, key)
                    return (yield from self._compute_locked(key, timeout, MISSING, token, takeover))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                current, _ = yield from self._wait(key, watch, remaining, holder=takeover)
                if self.servable(current):
                    return unwrap(current)
        finally:
            watch.close()
        value, _ = yield Compute(key)  # nobody could take over within a lease: compute, store nothing
        return untimed(value)

    def _take_over_in_process(self, key: Key, timeout: float | None, entry: Any) -> Steps:
        """This process's leader is late: serve stale, else one follower takes over."""
        flight, leader = self.flights.join(key.derived(TAKEOVER_SUFFIX))
        if not leader:
            return (yield from self._follow(key, timeout, flight, None))
        return (yield from self.flights.land(key.derived(TAKEOVER_SUFFIX), flight,
                                             self._take_over(key, timeout, entry)))

    def _fail_open(self, key: Key, in_flight: bool = False) -> Steps:
        """The backend is unreachable: compute without the distributed lock, once per process."""
        self.stats.add("errors")
        logger.warning("fence %s: backend unavailable, computing %s without the lock", self.name, key,
                       exc_info=True)
        if not in_flight:
            flight, leader = self.flights.join(key)
            if not leader:
                return (yield from self._follow(key, None, flight, None))
            return (yield from self.flights.land(key, flight, self._fail_open_compute(key)))
        return (yield from self._fail_open_compute(key))

    def _fail_open_compute(self, key: Key) -> Steps:
        value, _ = yield Compute(key)
        return untimed(value)


class Run:
    """One sync get-or-compute that stops where the value must be computed, until it is supplied.

    ``Fence.get_or_set`` supplies the value at once by calling the function.
    The cache middleware pair supplies it later: the fetch middleware starts
    the run and lets the request go on; the update middleware supplies the
    finished page. Until then the lock is held and the other callers wait.
    """

    def __init__(self, fence: Fence, steps: Steps | None, value: Any = None) -> None:
        self.fence, self._steps, self.value = fence, steps, value
        self._started: float | None = None
        #: Whether the value came from another caller of this process (the very object that caller got).
        self.followed = False
        #: Whether this caller waited for another's computation (in this process or another).
        self.waited = False
        if steps is not None:
            self._advance(None, None)

    @property
    def computing(self) -> bool:
        """Whether the run waits for this caller to supply the value."""
        return self._started is not None

    def supply(self, value: Any) -> Any:
        """Hand over the computed value (stored, shared); return what the caller gets."""
        started, self._started = self._started, None
        if started is None:
            raise RuntimeError("this run is not waiting for a value")
        self._advance((value, self.fence.computed(started)), None)
        return self.value

    def fail(self, error: BaseException) -> Any:
        """The computation raised: the algorithm releases the lock, then re-raises or serves stale."""
        if self._started is None:
            raise RuntimeError("this run is not waiting for a value")
        self._started = None
        self._advance(None, carry(error))
        return self.value

    def abandon(self) -> None:
        """Give up without a value (releases the lock)."""
        steps, self._steps, self._started = self._steps, None, None
        if steps is not None:
            self.fence.abandon(steps)

    def _advance(self, result: Any, error: BaseException | None) -> None:
        steps = self._steps
        assert steps is not None
        while True:
            try:
                op = steps.throw(error) if error is not None else steps.send(result)
            except StopIteration as stop:
                self._steps, self.value = None, stop.value
                return
            except Carried as carried:
                self._steps = None
                raise carried.exception from None
            except BaseException:
                self._steps = None
                raise
            result, error = None, None
            if type(op) is Compute:
                self._started = time.monotonic()
                return
            if type(op) is Follow:
                self.followed = True
            if type(op) in (Follow, Wake, Sleep):
                self.waited = True
            try:
                result = self.fence._do(op)
            except BaseException as exc:
                error = carry(exc)
