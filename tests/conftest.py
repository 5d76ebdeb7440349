"""Fixtures: real redis-server and memcached on free loopback ports, and fenced aliases over them.

FENCE_TEST_REDIS_URL / FENCE_TEST_MEMCACHED point the suite at servers you
run yourself; otherwise the session starts its own and stops them at the end.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches

from tests import browser, servers

BACKINGS = ["locmem", "redis", "django_redis", "pylibmc", "pymemcache"]
FENCE_OPTIONS = {"BETA": 1.0, "LOCK_TIMEOUT": 10, "WAIT_TIMEOUT": 5, "GRACE": 60}


def pytest_configure(config: pytest.Config) -> None:
    missing = []
    if not os.environ.get("FENCE_TEST_REDIS_URL"):
        missing.append("redis-server")
    if not os.environ.get("FENCE_TEST_MEMCACHED"):
        missing.append("memcached")
    if not os.environ.get("FENCE_TEST_REDIS_CLUSTER"):
        missing.append("redis-cli")
    for name in missing:
        try:
            servers.require_binary(name)
        except servers.MissingServer as exc:
            pytest.exit(str(exc), returncode=4)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Where the browser tests (tests/test_browser.py) left their screenshots, when they took any."""
    shots = config.stash.get(browser.SCREENSHOTS, None)
    if shots is not None and shots.taken:
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(f"{len(shots.taken)} screenshots in {shots.directory}")


def _server(variable: str, start: Callable[[], servers.Server]) -> Iterator[str]:
    """The server named by ``variable`` if set, else one started (and stopped) by the session."""
    if os.environ.get(variable):
        yield os.environ[variable]
        return
    server = start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _server("FENCE_TEST_REDIS_URL", servers.start_redis)


@pytest.fixture(scope="session")
def redis_cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[str, int]]]:
    """(host, port) of a 3-node Redis Cluster: FENCE_TEST_REDIS_CLUSTER ("host:port,...") or our own."""
    if os.environ.get("FENCE_TEST_REDIS_CLUSTER"):
        yield [(host, int(port)) for host, port in
               (node.rsplit(":", 1) for node in os.environ["FENCE_TEST_REDIS_CLUSTER"].split(","))]
        return
    cluster = servers.start_redis_cluster(str(tmp_path_factory.mktemp("redis-cluster")))
    yield cluster.addresses
    cluster.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A redis-py client on the session's server, its database flushed before and after."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_cluster_client(redis_cluster_nodes: list[tuple[str, int]]) -> Iterator[Any]:
    """A RedisCluster client on the session's 3-node cluster, flushed (every primary) before and after."""
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster_nodes])
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()


@pytest.fixture(scope="session")
def memcached_location() -> Iterator[str]:
    yield from _server("FENCE_TEST_MEMCACHED", servers.start_memcached)


def backing_config(kind: str, location: str, timeout: float = 10.0) -> dict[str, Any]:
    """A CACHES entry of the given kind; client timeouts bound every call (fail-open needs them)."""
    if kind == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": location}
    if kind == "redis":
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location,
                "OPTIONS": {"socket_timeout": timeout, "socket_connect_timeout": timeout}}
    if kind == "django_redis":
        return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location,
                "OPTIONS": {"SOCKET_TIMEOUT": timeout, "SOCKET_CONNECT_TIMEOUT": timeout}}
    if kind == "pylibmc":
        ms = int(timeout * 1000)
        return {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": location,
                "OPTIONS": {"behaviors": {"connect_timeout": ms, "receive_timeout": ms * 1000,
                                          "send_timeout": ms * 1000, "_poll_timeout": ms,
                                          "retry_timeout": 1}}}
    if kind == "pymemcache":
        return {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": location,
                "OPTIONS": {"connect_timeout": timeout, "timeout": timeout, "retry_attempts": 1,
                            "dead_timeout": 0.1}}
    raise ValueError(kind)


def fenced_caches(backing: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {
        "backing": backing,
        "default": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "backing", "TIMEOUT": 300,
                    "OPTIONS": {**FENCE_OPTIONS, **options}},
    }


def flush(kind: str, location: str) -> None:
    if kind in ("redis", "django_redis"):
        import redis

        client = redis.Redis.from_url(location)
        client.flushdb()
        client.close()
    elif kind in ("pylibmc", "pymemcache"):
        from pymemcache.client.base import Client

        host, port = location.split(":")
        client, probe = Client((host, int(port))), Client((host, int(port)))
        client.flush_all()
        # memcached 1.6 also drops what another connection writes within about a millisecond after
        # flush_all has answered (measured: 139 of 300 writes right after it, none 1 ms later), which
        # made tests lose their first write now and then. Wait until a write from elsewhere sticks.
        for _ in range(200):
            time.sleep(0.002)
            probe.set("fence-flush-probe", b"1")
            if probe.get("fence-flush-probe") is not None:
                probe.delete("fence-flush-probe")
                break
        client.close()
        probe.close()


@pytest.fixture(params=BACKINGS)
def backing(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, location) of one wrapped backend; every contract test runs over all of them."""
    kind = request.param
    if kind == "locmem":
        return kind, f"fence-{uuid.uuid4().hex}"
    if kind in ("redis", "django_redis"):
        return kind, request.getfixturevalue("redis_url")
    return kind, request.getfixturevalue("memcached_location")


@pytest.fixture(params=["locmem", "redis", "pylibmc"])
def fenced_on(request: pytest.FixtureRequest, settings: Any) -> Iterator[dict[str, Any]]:
    """CACHES with "default" a FencedCache (BETA 0) over LocMem, Redis or pylibmc, and a plain LocMem "plain".

    For the layers built on the fence (pages, fragments, invalidation), which
    need every kind of server but not every client of each.
    """
    kind = request.param
    location = (f"fence-{uuid.uuid4().hex}" if kind == "locmem" else
                request.getfixturevalue("redis_url" if kind == "redis" else "memcached_location"))
    flush(kind, location)
    backing = backing_config(kind, location)
    if kind == "locmem":
        backing["OPTIONS"] = {"MAX_ENTRIES": 10_000}
    settings.CACHES = {
        **fenced_caches(backing, BETA=0.0),
        "plain": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex},
    }
    yield settings.CACHES
    flush(kind, location)


@pytest.fixture
def fenced_config(backing: tuple[str, str], settings: Any) -> Iterator[dict[str, Any]]:
    """CACHES with "default" = a FencedCache over the parametrized backend, flushed around the test."""
    kind, location = backing
    flush(kind, location)
    settings.CACHES = fenced_caches(backing_config(kind, location))
    yield settings.CACHES
    caches["default"].close()
    flush(kind, location)


@pytest.fixture
def fenced(fenced_config: dict[str, Any]) -> Any:
    """The FencedCache over the parametrized backend."""
    cache = caches["default"]
    cache.reset_stats()
    return cache


@pytest.fixture
def memcached_server() -> Iterator[servers.Server]:
    """A memcached of this test's own, for tests that stop, kill or restart it."""
    server = servers.start_memcached()
    yield server
    server.stop()


def pylibmc_client(*locations: str, timeout_ms: int = 500) -> Any:
    """A pylibmc.Client with consistent hashing (ketama) and short timeouts, as the vote queue uses it."""
    import pylibmc

    return pylibmc.Client(list(locations), binary=False, behaviors={
        "ketama": True, "connect_timeout": timeout_ms, "_poll_timeout": timeout_ms,
        "receive_timeout": timeout_ms * 1000, "send_timeout": timeout_ms * 1000, "retry_timeout": 1})  # fmt: skip


def votes_config(kind: str, location: str) -> dict[str, Any]:
    """The "votes" CACHES entry on one backend kind; several memcached servers as a list."""
    config = backing_config(kind, location, timeout=0.5)
    if kind == "pylibmc":
        config["OPTIONS"]["behaviors"]["ketama"] = True
    return config


@pytest.fixture(autouse=True)
def drain_fence_stats() -> Iterator[None]:
    """Flush every fence's pending statistics after each test, while its caches are still configured.

    A process's counts reach the shared cache from a background thread that looks
    the wrapped alias up when it flushes; left pending, they would land in the cache
    a later test configured under the same alias and skew its exact counts. Counts
    that cannot be written (a test stopped the server) are dropped.
    """
    yield
    from django_fence import backends

    for shared in list(backends._shared.values()):
        if shared.stats is not None:
            try:
                shared.stats.flush()
            except Exception:
                shared.stats._pending.clear()
