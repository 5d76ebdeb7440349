"""What the algorithm (engine.Fence.steps) asks its drivers to do, and what it talks to.

The algorithm is a generator: it yields one of these operations at a time and
gets the result back (or the exception thrown in). The sync driver
(engine.Fence.get_or_set) and the async driver (aio.aget_or_set) are the only
code that performs them.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Generator
from typing import Any, NamedTuple, Protocol

from .locks import Watch
from .store import Key


class Store(Protocol):
    def get(self, key: Key) -> Any: ...
    def get_primary(self, key: Key) -> Any: ...
    def set(self, key: Key, value: Any, ttl: float | None) -> None: ...
    def value_and_generation(self, key: Key) -> tuple[Any, int | None]: ...


class Lock(Protocol):
    #: True: waiters are woken (Wake); False: they pace their checks (pause + peek).
    notifies: bool

    def acquire(self, key: Key, token: str, ttl: float, expected_end: float) -> bool: ...
    def release(self, key: Key, token: str, wake: Key | None = None) -> bool: ...
    def open_watch(self, key: Key) -> Watch: ...
    def pause(self, key: Key, watch: Watch, limit: float) -> float: ...
    def peek(self, key: Key) -> tuple[Any, bool]: ...


class Counts(Protocol):
    def add(self, name: str, amount: int = 1) -> None: ...


# -- the operations the algorithm asks its driver to carry out ---------------------------------------
class Call(NamedTuple):
    """Blocking I/O: ``<target>.<method>(*args)`` on the executing thread's store or lock."""

    target: str
    method: str
    args: tuple[Any, ...]


class Sleep(NamedTuple):
    seconds: float


class Wake(NamedTuple):
    """Wait until the watch is woken, at most ``timeout`` seconds."""

    watch: Watch
    timeout: float


class Follow(NamedTuple):
    """Wait for another caller's in-process flight (raises FlightTimeout after ``timeout``)."""

    flight: concurrent.futures.Future[Any]
    timeout: float | None


class Compute(NamedTuple):
    """Run the user's callable for ``key``; the result is (value, seconds it took)."""

    key: Key


Op = Call | Sleep | Wake | Follow | Compute
Steps = Generator[Op, Any, Any]
