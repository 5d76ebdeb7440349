"""The async driver of the fence's algorithm, and how async code reaches blocking cache clients.

The algorithm is engine.Fence.steps; this driver carries out its operations
on the event loop: waits are awaits (on the flight, on the wake-up, on
``asyncio.sleep``), an async callable runs in the caller's own task, and only
the blocking cache calls go to a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from .engine import UNREACHABLE, Fence
from .exceptions import BackendUnavailable
from .flights import Carried, FlightTimeout, carry, computing, reset_computing
from .ops import Call, Compute, Follow, Op, Sleep, Steps, Wake
from .store import Key

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
    """Run one blocking cache call in a fence worker thread and await it.

    Each worker thread has its own Django cache instances (Django makes them
    per thread: a pylibmc client must not be shared), and nothing waits in a
    worker: it only ever runs one short call. Not Django's default
    ``sync_to_async(thread_sensitive=True)``, which queues every async cache
    call of the process on one thread.
    """
    return await asyncio.get_running_loop().run_in_executor(_io_executor(), lambda: function(*args))


async def aget_or_set(fence: Callable[[], Fence], key: Key, compute: Callable[[], Any],
                      timeout: float | None) -> Any:
    """``Fence.get_or_set`` for async code; ``compute`` may be sync or async.

    ``fence`` returns the calling thread's Fence, so each blocking call runs
    against the worker thread's own store and lock.
    """
    run = await astart(fence, key, timeout)
    while run.computing:
        token = computing(key)
        try:
            value = await _call(compute)
        except GeneratorExit:  # this coroutine is being closed: no more awaits, clean up synchronously
            try:
                run.abandon()
            finally:
                reset_computing(token)
            raise
        except BaseException as exc:  # handed to the algorithm, which releases what it holds
            reset_computing(token)
            await run.fail(exc)
            continue
        reset_computing(token)
        await run.supply(value)
    return run.value


async def astart(fence: Callable[[], Fence], key: Key, timeout: float | None) -> ARun:
    """``Fence.start`` for async code."""
    here = fence()
    here.check_reentry(key)
    try:
        entry = await off_loop(lambda: fence().store.get(key))
    except BackendUnavailable:
        entry = UNREACHABLE
    value, steps = here.begin(key, timeout, entry)
    run = ARun(fence, here, steps, value)
    if steps is not None:
        await run.advance(None, None)
    return run


async def _call(compute: Callable[[], Any]) -> Any:
    if inspect.iscoroutinefunction(compute):
        return await compute()
    # A sync callable may use the ORM: run it the way Django runs sync code from async code,
    # with the caller's context (its language, its context variables) and its sync thread.
    value = await sync_to_async(_carrying(compute))()
    if inspect.isawaitable(value):
        value = await value
    return value


class ARun:
    """``engine.Run`` for async code: waits are awaits, blocking calls go to the fence-io threads."""

    def __init__(self, fence: Callable[[], Fence], here: Fence, steps: Steps | None, value: Any = None) -> None:
        self.fence, self.here, self._steps, self.value = fence, here, steps, value
        self._started: float | None = None
        #: Whether the value came from another caller of this process (the very object that caller got).
        self.followed = False
        #: Whether this caller waited for another's computation (in this process or another).
        self.waited = False

    @property
    def computing(self) -> bool:
        return self._started is not None

    async def supply(self, value: Any) -> Any:
        started, self._started = self._started, None
        if started is None:
            raise RuntimeError("this run is not waiting for a value")
        await self.advance((value, self.here.computed(started)), None)
        return self.value

    async def fail(self, error: BaseException) -> Any:
        if self._started is None:
            raise RuntimeError("this run is not waiting for a value")
        self._started = None
        await self.advance(None, carry(error))
        return self.value

    def abandon(self) -> None:
        """Give up without a value, with blocking calls (for a coroutine being closed)."""
        steps, self._steps, self._started = self._steps, None, None
        if steps is not None:
            self.here.abandon(steps)

    async def advance(self, result: Any, error: BaseException | None) -> None:
        steps = self._steps
        assert steps is not None
        cancelled: BaseException | None = None  # delivered at the step after the call it interrupted
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
            if cancelled is not None:
                error, cancelled = cancelled, None
                continue
            if type(op) is Compute:
                self._started = time.monotonic()
                return
            if type(op) is Follow:
                self.followed = True
            if type(op) in (Follow, Wake, Sleep):
                self.waited = True
            try:
                result = await _do(op, self.fence)
            except Interrupted as interrupted:  # the call finished; its outcome first, then the cancellation
                result, error, cancelled = interrupted.result, interrupted.error, interrupted.cancel
            except GeneratorExit:  # this coroutine is being closed: no more awaits, clean up synchronously
                self._steps = None
                self.here.abandon(steps)
                raise
            except BaseException as exc:  # handed to the algorithm, which releases what it holds
                error = carry(exc)


class Interrupted(Exception):
    """A task was cancelled while a blocking call ran in a worker; the call's outcome is kept."""

    def __init__(self, result: Any, error: BaseException | None, cancel: BaseException) -> None:
        super().__init__()
        self.result, self.error, self.cancel = result, error, cancel


async def _do(op: Op, fence: Callable[[], Fence]) -> Any:
    if type(op) is Call:
        call = asyncio.get_running_loop().run_in_executor(
            _io_executor(), lambda: getattr(getattr(fence(), op.target), op.method)(*op.args))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError as cancel:
            # The call goes on in its thread (a lock may be taken): wait for it, so the algorithm
            # learns what it did and releases it. One short, socket-bounded round trip.
            await asyncio.wait({call})
            failure = call.exception()
            raise Interrupted(None if failure else call.result(), failure, cancel) from None
    if type(op) is Sleep:
        return await asyncio.sleep(op.seconds)
    if type(op) is Wake:
        return await op.watch.await_wake(op.timeout)
    assert type(op) is Follow
    # Not wait_for: the leader's own TimeoutError would read as ours (3.11+).
    waiting = asyncio.ensure_future(asyncio.shield(asyncio.wrap_future(op.flight)))
    done, _ = await asyncio.wait({waiting}, timeout=op.timeout)
    if not done:
        waiting.cancel()
        raise FlightTimeout
    return waiting.result()


def _carrying(compute: Callable[[], Any]) -> Callable[[], Any]:
    """asyncio futures refuse a StopIteration (the await would hang): carry it across."""

    def run() -> Any:
        try:
            return compute()
        except StopIteration as exc:
            raise Carried(exc) from None

    return run
