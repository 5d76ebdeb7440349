"""Fail-open: the server stops or hangs; get_or_set still answers, once per process, and says so."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from tests import servers
from tests.conftest import backing_config, fenced_caches
from tests.test_stampede import Counter, in_threads

pytestmark = pytest.mark.timeout(60)

KINDS = ["redis", "django_redis", "pylibmc", "pymemcache"]


@pytest.fixture(params=KINDS)
def own_server(request: pytest.FixtureRequest, settings: Any) -> Iterator[tuple[str, servers.Server]]:
    """A server of this test's own, so the test can stop it; the fenced alias wraps it."""
    kind = request.param
    server = servers.start_redis() if "redis" in kind else servers.start_memcached()
    settings.CACHES = fenced_caches(backing_config(kind, server.url, timeout=0.5))
    yield kind, server
    server.stop()


@pytest.fixture(params=KINDS)
def hung_server(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """The fenced alias wraps a port that accepts connections and never answers."""
    kind = request.param
    with servers.blackhole() as port:
        location = f"redis://127.0.0.1:{port}/0" if "redis" in kind else f"127.0.0.1:{port}"
        settings.CACHES = fenced_caches(backing_config(kind, location, timeout=0.5))
        yield kind


def assert_fails_open(caplog: Any, budget: float) -> None:
    fenced = caches["default"]
    compute = Counter(0.5, value="computed")
    with caplog.at_level(logging.WARNING, logger="django_fence"):
        began = time.monotonic()
        results, errors, _ = in_threads(10, lambda: fenced.get_or_set("k", compute, 60))
        elapsed = time.monotonic() - began
    assert errors == []
    assert results == ["computed"] * 10
    assert compute.calls == 1  # single-flight still holds within the process
    assert elapsed < budget
    assert "backend unavailable, computing k without the lock" in caplog.text
    assert fenced._stats().pending().get("errors", 0) >= 1


def test_get_or_set_fails_open_when_the_server_is_stopped(own_server: tuple[str, servers.Server],
                                                          caplog: Any) -> None:
    _kind, server = own_server
    fenced = caches["default"]
    fenced.set("warm", 1)  # connected before the server goes away
    server.stop()
    assert_fails_open(caplog, budget=5.0)


def test_get_or_set_fails_open_when_the_server_hangs(hung_server: str, caplog: Any) -> None:
    assert_fails_open(caplog, budget=5.0)


def test_async_get_or_set_fails_open(own_server: tuple[str, servers.Server]) -> None:
    import asyncio

    _, server = own_server
    server.stop()
    assert asyncio.run(caches["default"].aget_or_set("k", lambda: "computed", 60)) == "computed"


def test_fence_recovers_when_the_server_comes_back(own_server: tuple[str, servers.Server]) -> None:
    _kind, server = own_server
    fenced = caches["default"]
    server.stop()
    assert fenced.get_or_set("k", lambda: "down", 60) == "down"
    server.start()
    deadline = time.monotonic() + 10
    while True:  # clients reconnect on their own schedule (pylibmc retry_timeout, pymemcache dead_timeout)
        value = fenced.get_or_set("k", lambda: "up", 60)
        try:
            if value == "up" and fenced.get("k") == "up":
                break
        except Exception:  # plain get raises as the wrapped backend does until it reconnects
            pass
        assert time.monotonic() < deadline, value
        time.sleep(0.2)
    compute = Counter(0.2)
    fenced.delete("k")
    in_threads(10, lambda: fenced.get_or_set("k", compute, 60))
    assert compute.calls == 1


def test_plain_methods_behave_like_the_wrapped_backend_when_down(own_server: tuple[str, servers.Server]) -> None:
    _, server = own_server
    server.stop()

    def outcome(alias: str) -> str:
        """The first get of a fresh cache instance (each thread has its own) on the stopped server."""
        found: list[str] = []

        def get() -> None:
            try:
                found.append(repr(caches[alias].get("k")))
            except Exception as exc:
                found.append(type(exc).__name__)

        thread = threading.Thread(target=get)
        thread.start()
        thread.join()
        return found[0]

    assert outcome("default") == outcome("backing")
