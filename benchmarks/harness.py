"""What every benchmark script needs: servers, spawned processes that start together, stats, tables.

Kept apart from the scripts so that each script holds only its rows; the children that
``run_processes`` spawns import this module by name, so it must not depend on ``__main__``.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

START_TIMEOUT = 60.0  # spawning P interpreters that import Django takes seconds on a 2-core machine
SPAWN = multiprocessing.get_context("spawn")  # fork would copy the parent's sockets and thread state
ROOT = Path(__file__).resolve().parent.parent
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")

# memcached's per-command counters (`stats`): cmd_set counts every storage command (add, cas, ...).
MEMCACHED_OPS = (
    "cmd_get",
    "cmd_set",
    "cmd_touch",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
)


def describe(exc: BaseException) -> str:
    """``Type: message``, short enough for a report line."""
    return f"{type(exc).__name__}: {exc}"[:300]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- servers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    """Where the servers listen: ``redis://127.0.0.1:PORT/0`` and ``127.0.0.1:PORT``."""

    redis: str
    memcached: str

    @property
    def memcached_address(self) -> tuple[str, int]:
        host, port = self.memcached.rsplit(":", 1)
        return host, int(port)


@contextmanager
def running_servers() -> Iterator[Servers]:
    """A redis-server and a memcached of our own on free loopback ports, stopped on the way out."""
    from tests.servers import start_memcached, start_redis

    redis_server = start_redis()
    try:
        memcached_server = start_memcached()
        try:
            yield Servers(redis=redis_server.url, memcached=memcached_server.url)
        finally:
            memcached_server.stop()
    finally:
        redis_server.stop()


@dataclass(frozen=True)
class WebServer:
    """A gunicorn master and its workers, listening on 127.0.0.1:``port``."""

    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> None:
        """Raise, with the end of its log, if the server has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {self.process.returncode}: {self.log_tail()}")

    def log_tail(self, chars: int = 600) -> str:
        return self.log_text()[-chars:].strip()

    def log_exceptions(self) -> dict[str, int]:
        """The last line of each traceback in the log (``TypeError: ...``) and how often it occurred."""
        found: dict[str, int] = {}
        for line, following in itertools.pairwise([*self.log_text().splitlines(), ""]):
            if EXCEPTION_LINE.match(line) and not following.startswith((" ", "\t")):
                found[line] = found.get(line, 0) + 1
        return found

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def running_gunicorn(app: str, env: dict[str, str], workers: int, threads: int) -> Iterator[WebServer]:
    """gunicorn serving ``app`` with ``workers`` gthread workers of ``threads`` threads on a free loopback port.

    It runs in a session of its own, so Ctrl-C in the terminal reaches only us, and we stop it on the
    way out whatever happened: SIGTERM (gunicorn's graceful stop), then SIGKILL to the whole group.
    """
    from tests.servers import free_port, wait_for_port

    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--worker-class", "gthread", "--threads", str(threads), "--backlog", "2048", "--timeout", "60",
        "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            server = WebServer(port, process, log)
            wait_for_port(port, START_TIMEOUT)
            server.check()
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
                with suppress(subprocess.TimeoutExpired):
                    process.wait(15)
            with suppress(ProcessLookupError):  # a worker the master left behind, or a master that hung
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def _clients(servers: Servers) -> Iterator[tuple[Any, Any]]:
    import redis
    from pymemcache.client.base import Client

    memcached = Client(servers.memcached_address)
    try:
        with redis.Redis.from_url(servers.redis) as client:
            yield client, memcached
    finally:
        memcached.close()


def flush(servers: Servers) -> None:
    """Empty both servers so that the next row starts cold."""
    with _clients(servers) as (redis_client, memcached):
        redis_client.flushall()
        memcached.flush_all()


def server_ops(servers: Servers) -> int:
    """Commands both servers have processed so far; the difference of two readings is a row's cost.

    Redis counts the commands of the reading itself: subtract ``server_ops_overhead``.
    """
    with _clients(servers) as (redis_client, memcached):
        commands = int(redis_client.info("stats")["total_commands_processed"])
        stats = memcached.stats()
    return commands + sum(int(stats.get(name.encode(), stats.get(name, 0))) for name in MEMCACHED_OPS)


def server_ops_overhead(servers: Servers) -> int:
    """What taking a reading adds to the difference of two readings (its INFO, the client's handshake)."""
    first = server_ops(servers)
    return server_ops(servers) - first


def versions(servers: Servers, packages: list[str]) -> str:
    """Server and package versions, for the header of a report."""
    import platform

    with _clients(servers) as (redis_client, memcached):
        redis_version = redis_client.info("server")["redis_version"]
        memcached_version = memcached.version().decode()
    installed = []
    for package in packages:
        try:
            installed.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            installed.append(f"{package} (not installed)")
    return (
        f"servers: redis-server {redis_version}, memcached {memcached_version}; "
        f"{SPAWN.cpu_count()} CPUs\npython {platform.python_version()}, {', '.join(installed)}"
    )


# --- processes that start together -----------------------------------------------------------------


class StartGate:
    """Holds every child at the start until all are ready, lets the parent act, then opens.

    The parent is one more party of the ``ready`` barrier, so it knows when every child has set up
    and warmed its connections; it reads the server counters, then sets ``go`` for all at once.
    """

    def __init__(self, parties: int) -> None:
        self.ready = SPAWN.Barrier(parties + 1)
        self.go = SPAWN.Event()

    def wait(self) -> None:
        """In a child: block until every child is ready and the parent opens the gate."""
        self.ready.wait(START_TIMEOUT)
        if not self.go.wait(START_TIMEOUT):
            raise threading.BrokenBarrierError("the parent never opened the gate")

    def abort(self) -> None:
        """In a child that failed to set up: release everybody at once instead of at the timeout."""
        self.ready.abort()

    def open(self, before: Callable[[], None]) -> bool:
        """In the parent: wait for every child, call ``before``, open; False if a child aborted."""
        try:
            self.ready.wait(START_TIMEOUT)
        except threading.BrokenBarrierError:
            return False
        try:
            before()
        finally:
            self.go.set()
        return True


def run_processes(
    target: Callable[..., None],
    argsets: list[tuple[Any, ...]],
    timeout: float,
    gate: StartGate | None = None,
    before_start: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Run ``target(*args, results)`` in one spawned process per argset; return what they put.

    Each child puts exactly one dict on ``results``. A child that dies or hangs becomes a
    ``{"error": ...}`` entry, and every child is gone when this returns.
    """
    results = SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(*args, results), daemon=True) for args in argsets]
    for process in processes:
        process.start()
    collected: list[dict[str, Any]] = []
    try:
        if gate is not None:
            gate.open(before_start)
        deadline = time.monotonic() + timeout
        while len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=0.5))
            except queue.Empty:
                crashed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if crashed:
                    collected.append({"error": f"a child process exited with code {crashed[0]}"})
                    break
                if time.monotonic() > deadline:
                    collected.append({"error": f"timed out after {timeout:.0f}s"})
                    break
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
                process.join(5)
    return collected


# --- what the callers saw --------------------------------------------------------------------------


class Counter:
    """A thread-safe count, e.g. of recompute calls within one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


@dataclass
class CallerStats:
    """Latencies and failures of one process's callers; ``as_dict`` is what crosses to the parent."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    bad_values: int = 0
    samples: list[str] = field(default_factory=list)  # a few distinct exception texts
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, started: float, value: object, expected: object) -> None:
        with self._lock:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.bad_values += value != expected

    def record_error(self, started: float, exc: BaseException) -> None:
        with self._lock:
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.errors += 1
            if len(self.samples) < 3 and describe(exc) not in self.samples:
                self.samples.append(describe(exc))

    def as_dict(self) -> dict[str, Any]:
        keys = ("latencies_ms", "errors", "bad_values", "samples")
        return {key: getattr(self, key) for key in keys}


def time_calls(operation: Callable[[], object], count: int) -> list[float]:
    """Wall time of each of ``count`` sequential calls, in microseconds."""
    clock = time.perf_counter_ns
    timings = []
    for _ in range(count):
        started = clock()
        operation()
        timings.append((clock() - started) / 1000)
    return timings


# --- output ----------------------------------------------------------------------------------------


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Fixed-width columns: the first and the last left-aligned, numbers in between right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        aligned = (
            cell.ljust(width) if i in (0, last) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(aligned).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)])
