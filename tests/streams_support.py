"""Helpers for the streams and sets tests: whole-database snapshots, peers on another database, clocks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def snapshot(client: Any, prefix: bytes = b"") -> dict[bytes, Any]:
    """Every key of the client's database with its whole content, for equality checks.

    ``prefix`` is stripped from key names, so two layouts of the same data compare equal.
    """
    state: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "string":
            value = client.get(key)
        else:
            raise AssertionError(f"unexpected {kind} at {key!r}")
        state[key.removeprefix(prefix)] = value
    return state


def peer_client(redis_url: str, db: int, factory: Any, flush: bool = True) -> Any:
    """A client of the peer's own class on database ``db`` of the same server, flushed (a sync one)."""
    import redis

    kwargs = redis.connection.parse_url(redis_url)
    client = factory(host=kwargs["host"], port=kwargs["port"], db=db)
    if flush:
        client.flushdb()
    return client


@contextmanager
def skewed_clock(monkeypatch: pytest.MonkeyPatch, offset: float) -> Iterator[None]:
    """This process's time.time() runs ``offset`` seconds off, as on a client whose clock is wrong."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset)
    try:
        yield
    finally:
        monkeypatch.setattr(time, "time", real)


class CountingClient:
    """Counts the round trips a redis-py client makes (every command passes execute_command)."""

    def __init__(self, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        original = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            self.calls.append(str(args[0]))
            return original(*args, **options)

        monkeypatch.setattr(client, "execute_command", counted)
