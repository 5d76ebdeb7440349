"""View-level storm: concurrent requests for a cold page served by gunicorn, ``cache_page`` vs ``fenced_cache_page``.

For each row a fresh gunicorn (W gthread workers x T threads, started here on a free loopback port)
serves benchmarks/storm_site, whose CACHES the row passes in the environment. Client processes
send N concurrent GETs (one connection each, ``Connection: close``) at the row's page, starting
together; then the page is left to expire and the storm repeats, K storms in all. The page counts
its renders with an atomic incr on the backing server, so renders are counted across workers.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import (
    START_TIMEOUT,
    CallerStats,
    Servers,
    StartGate,
    WebServer,
    describe,
    flush,
    format_table,
    percentile,
    run_processes,
    running_gunicorn,
)

APP = "benchmarks.storm_site.wsgi:application"
SETTINGS = "benchmarks.storm_site.settings"
CLIENT_PROCESSES = 4  # the callers' threads are spread over this many processes, as the stampede rows do
REQUEST_TIMEOUT = 60.0
EXPIRY_MARGIN = 1.5  # seconds past the TTL before the next storm; memcached expires on whole seconds
WARM_UP_ROUNDS = 3  # at least; more until every worker has answered


@dataclass(frozen=True)
class ViewStormRow:
    """One line of the view storm table: the page requested and the CACHES of its site."""

    name: str
    page: str  # a page of storm_site/views.py PAGES, at /<page>/
    caches: Callable[[Servers], dict[str, dict[str, Any]]]
    note: str = ""


@dataclass(frozen=True)
class ViewStormOptions:
    requests: int
    workers: int
    threads: int
    storms: int
    render_ms: float
    render: str
    page_ttl: int = 2


@dataclass
class ViewStormResult:
    """What a row's storms did, one entry per storm."""

    name: str
    note: str = ""
    renders: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # from the start of a storm to its last response
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    samples: set[str] = field(default_factory=set)
    error: str = ""

    def cells(self) -> list[str]:
        if self.error:
            return [self.name, "-", "-", "-", "-", "-", "-", "error (below)"]
        requests = len(self.latencies_ms)
        return [
            self.name,
            str(sum(self.renders)),
            " ".join(str(renders) for renders in self.renders),
            str(self.errors),
            f"{percentile(self.latencies_ms, 0.50):.1f}",
            f"{percentile(self.latencies_ms, 0.99):.1f}",
            f"{requests / sum(self.seconds):.0f}" if sum(self.seconds) else "-",
            self.note,
        ]

    def details(self) -> list[str]:
        return [self.error] if self.error else sorted(self.samples)


HEADERS = ["row", "renders", "per storm", "errors", "p50 ms", "p99 ms", "requests/s", "note"]


# --- the clients, in spawned processes -------------------------------------------------------------


def storm_client(port: int, path: str, requests: int, gate: StartGate, results: Any) -> None:
    """One client process: ``requests`` threads each GET ``path`` once, all released together."""
    stats = CallerStats()
    go = threading.Event()

    def request() -> None:
        go.wait()
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request("GET", path, headers={"Connection": "close"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status} {response.reason}")
        except Exception as exc:
            stats.record_error(started, exc)
        else:
            stats.record(started, None, None)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, daemon=True) for _ in range(requests)]
    for thread in threads:
        thread.start()
    try:
        gate.wait()
    except threading.BrokenBarrierError:
        results.put({"aborted": True})
        return
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT + 5)
    results.put({**stats.as_dict(), "seconds": time.perf_counter() - started})


# --- the parent ------------------------------------------------------------------------------------


def read_renders(server: WebServer, page: str) -> int:
    with urllib.request.urlopen(f"{server.url}/renders/", timeout=REQUEST_TIMEOUT) as response:
        return int(json.load(response)[page])


def warm_up(server: WebServer, options: ViewStormOptions) -> None:
    """Wait until every worker answers, with its cache clients open on as many threads as we can reach.

    Concurrent GETs of /warm/ (each holds its thread 50 ms) in rounds of W x T; gthread workers
    accept greedily, so rounds go on until every worker's pid has been seen.
    """
    deadline = time.monotonic() + START_TIMEOUT
    seen: set[str] = set()

    def get() -> str:
        try:
            with urllib.request.urlopen(f"{server.url}/warm/", timeout=REQUEST_TIMEOUT) as response:
                return str(response.read().decode())
        except OSError:
            return ""  # workers still booting

    rounds = 0
    with ThreadPoolExecutor(max_workers=min(options.workers * options.threads, 200)) as pool:
        while rounds < WARM_UP_ROUNDS or len(seen) < options.workers:
            server.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {options.workers} gunicorn workers answered")
            seen.update(pid for pid in pool.map(lambda _: get(), range(options.workers * options.threads)) if pid)
            rounds += 1


def storm(server: WebServer, page: str, options: ViewStormOptions) -> tuple[int, list[dict[str, Any]]]:
    """One storm: (renders it caused, the client processes' reports)."""
    processes = min(CLIENT_PROCESSES, options.requests)
    shares = [options.requests // processes + (i < options.requests % processes) for i in range(processes)]
    gate = StartGate(processes)
    before: list[int] = []
    reports = run_processes(
        storm_client,
        [(server.port, f"/{page}/", share, gate) for share in shares],
        timeout=START_TIMEOUT + REQUEST_TIMEOUT,
        gate=gate,
        before_start=lambda: before.append(read_renders(server, page)),
    )
    if not before:
        raise RuntimeError("a client process failed to start")
    return read_renders(server, page) - before[0], reports


def run_view_storm_row(row: ViewStormRow, servers: Servers, options: ViewStormOptions) -> ViewStormResult:
    """Start the row's gunicorn, warm it, run the storms with an expiry between two, stop it."""
    flush(servers)
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "STORM_CACHES": json.dumps(row.caches(servers)),
        "STORM_PAGE_TTL": str(options.page_ttl),
        "STORM_RENDER_MS": str(options.render_ms),
        "STORM_RENDER": options.render,
    }
    result = ViewStormResult(row.name, note=row.note)
    with running_gunicorn(APP, env, options.workers, options.threads) as server:
        warm_up(server, options)
        for number in range(options.storms):
            if number:
                time.sleep(options.page_ttl + EXPIRY_MARGIN)  # the page has expired everywhere
            renders, reports = storm(server, row.page, options)
            failures = [report["error"] for report in reports if "error" in report]
            if failures or any("aborted" in report for report in reports):
                result.error = failures[0] if failures else "a client process aborted"
                return result
            result.renders.append(renders)
            result.seconds.append(max(report["seconds"] for report in reports))
            for report in reports:
                result.latencies_ms.extend(report["latencies_ms"])
                result.errors += report["errors"]
                result.samples.update(report["samples"])
        server.check()
        for line, count in server.log_exceptions().items():
            result.samples.add(f"gunicorn log, {count}x: {line}")
        if result.errors or result.samples:
            with tempfile.NamedTemporaryFile("w", prefix="view-storm-", suffix=".log", delete=False) as saved:
                saved.write(server.log_text())
            result.samples.add(f"gunicorn's whole log: {saved.name}")
    return result


def failed(row: ViewStormRow, exc: BaseException) -> ViewStormResult:
    return ViewStormResult(row.name, note=row.note, error=describe(exc))


def report_view_storm(results: list[ViewStormResult], options: ViewStormOptions) -> None:
    print(
        f"\nView-level storm: {options.storms} storms of {options.requests} concurrent GETs of one page, "
        f"{options.page_ttl} s TTL, waiting out the expiry between two; renders: total and per storm"
    )
    print(
        f"gunicorn: {options.workers} gthread workers x {options.threads} threads; render {options.render_ms:g} ms "
        f"({options.render}); requests/s: requests / time from each storm's start to its last response\n"
    )
    print(format_table(HEADERS, [result.cells() for result in results]))
    details = [f"  {result.name}: {detail}" for result in results for detail in result.details()]
    if details:
        print("\nerrors:", *details, sep="\n")
