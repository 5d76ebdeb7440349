"""Our exceptions, and the one place where client errors become them.

Adapters (locks.py, store.py) wrap their calls in :func:`translated`, so
the engine sees only :class:`BackendUnavailable`, never a client's types.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator


class BackendUnavailable(Exception):
    """The wrapped cache's server could not be reached (refused, reset, timed out)."""


@functools.cache
def _error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(errors meaning "server unavailable", errors that are the caller's fault)."""
    unavailable: list[type[BaseException]] = [OSError]
    caller: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        import redis.exceptions

        unavailable += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
        caller += [redis.exceptions.DataError]
    with contextlib.suppress(ImportError):
        from django_redis.exceptions import ConnectionInterrupted

        unavailable.append(ConnectionInterrupted)
    with contextlib.suppress(ImportError):
        import pylibmc

        unavailable.append(pylibmc.Error)
        caller += [pylibmc.NotFound, pylibmc.ClientError, pylibmc.NotSupportedError]
    with contextlib.suppress(ImportError):
        import pymemcache.exceptions as pymemcache_errors

        unavailable.append(pymemcache_errors.MemcacheError)
        caller += [pymemcache_errors.MemcacheClientError]
    return tuple(unavailable), tuple(caller)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a client's exception means the server could not be reached."""
    unavailable, caller = _error_types()
    return isinstance(exc, unavailable) and not isinstance(exc, caller)


def unavailable(exc: BaseException, what: str) -> BackendUnavailable | None:
    """``BackendUnavailable`` for a client's "server unavailable" error, else None (re-raise as is).

    For hot paths where a context manager per call costs too much (streams).
    """
    return BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") if is_unavailable(exc) else None


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise the wrapped client's "server unavailable" errors as BackendUnavailable."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        raise
