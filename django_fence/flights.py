"""What one process shares between the callers of a key: the flight, the marks, the last delta.

In-process single-flight: threads and asyncio tasks that miss the same key
share one computation (a concurrent Future, which threads wait on and tasks
await), so a process sends one lock attempt, not one per thread.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
from typing import Any

from .envelope import Envelope
from .ops import Steps
from .store import Key


class Carried(Exception):
    """Carries a StopIteration through the algorithm's generator (PEP 479 would turn it into RuntimeError)."""

    def __init__(self, exception: BaseException) -> None:
        super().__init__(repr(exception))
        self.exception = exception


def carry(exc: BaseException) -> BaseException:
    return Carried(exc) if isinstance(exc, StopIteration | StopAsyncIteration) else exc


class Abandoned(BaseException):
    """Thrown into the algorithm when its driver is closed: release what you hold, then stop."""


class FlightTimeout(Exception):
    """An in-process flight did not land within WAIT_TIMEOUT."""


class LeaderCancelled(Exception):
    """The caller leading a flight was cancelled; a follower takes over."""


_computing: contextvars.ContextVar[frozenset[Key]] = contextvars.ContextVar("fence_computing", default=frozenset())


def computing(key: Key) -> contextvars.Token[frozenset[Key]]:
    """Mark ``key`` as being computed in this context (re-entry detection)."""
    return _computing.set(_computing.get() | {key})


def reset_computing(token: contextvars.Token[frozenset[Key]]) -> None:
    _computing.reset(token)


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

    def land(self, key: Key, flight: concurrent.futures.Future[Any], steps: Steps) -> Steps:
        """Run the leader's steps and hand their outcome to every follower."""
        try:
            result = yield from steps
        except BaseException as exc:
            # A cancelled leader must not cancel its followers: they take over instead.
            flight.set_exception(exc if isinstance(exc, Exception) else LeaderCancelled(repr(exc)))
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]


class Deltas(dict[Key, float]):
    """The last recompute time seen per key in this process (bounded).

    A leader writes ``now + delta`` into its lock entry, so waiters that
    cannot be woken (memcached) sleep until then; after a hard expiry the
    envelope that carried delta is gone, so every read of an envelope and
    every recompute leaves it here.
    """

    LIMIT = 10_000

    def learn(self, key: Key, entry: Any) -> None:
        if type(entry) is Envelope:
            self.remember(key, entry.delta)

    def remember(self, key: Key, delta: float) -> None:
        if len(self) >= self.LIMIT:
            self.clear()
        self[key] = delta
