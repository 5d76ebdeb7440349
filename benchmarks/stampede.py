"""Stampede and hit-path benchmark: FencedCache against Django's cache API and the peers.

In one run, against one redis-server and one memcached started here on free loopback ports:

1. Stampede: for each row, P processes x T threads call get-or-compute on ONE cold key at the
   same moment. The recompute sleeps --recompute-ms and counts itself; the table shows how often
   it ran, how many callers got an exception or a wrong value, the p50/p99 latency of the
   callers' calls, and how many commands the row sent to the servers.
2. View-level storm (benchmarks/view_storm.py): a gunicorn started here serves a small site;
   N concurrent HTTP requests for one cold page, for Django's ``cache_page`` and for
   ``fenced_cache_page``, K times with an expiry in between; renders, errors, p50/p99, requests/s.
3. Hit path: in one process, N sequential calls of caches["backing"].get(key) and of
   caches["fenced"].get_or_set(key, fn, 300) on one warm key, in alternating blocks so that
   noise on a small machine hits both equally.

Run from the repository root::

    .venv/bin/python benchmarks/stampede.py [--processes 4] [--threads 50] [--recompute-ms 50]
                                            [--view-requests 200] [--view-workers 4] [--view-threads 50]
                                            [--view-storms 3] [--view-render-ms 100] [--view-render sleep]
                                            [--hits 20000] [--only NAME ...]

Every measurement runs in fresh processes started with "spawn", each configuring Django itself,
so no row inherits another's connections, thread-locals or imported state.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script: only benchmarks/ is on the path, and tests/ is needed too
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    START_TIMEOUT,
    CallerStats,
    Counter,
    Servers,
    StartGate,
    describe,
    flush,
    format_table,
    percentile,
    run_processes,
    running_servers,
    server_ops,
    server_ops_overhead,
    time_calls,
    versions,
)
from benchmarks.view_storm import (
    ViewStormOptions,
    ViewStormResult,
    ViewStormRow,
    failed,
    report_view_storm,
    run_view_storm_row,
)

TTL = 300
RUN_TIMEOUT = 60.0  # from the start; a row slower than this is reported as hung
HIT_BLOCKS = 10
HIT_WARMUP = 500
FENCE_OPTIONS = {"BETA": 1.0, "LOCK_TIMEOUT": 10, "WAIT_TIMEOUT": 5, "GRACE": 60}
PACKAGES = ["Django", "redis", "pymemcache", "pylibmc", "dogpile.cache", "cachefence", "gunicorn", "django-fence"]

CachesConfig = dict[str, dict[str, Any]]
Call = Callable[[], object]  # the measured call; returns the value the caller got
ThreadSetup = Callable[[], Call]  # runs in each thread before the start: opens its connections


class SetupError(RuntimeError):
    """A row could not be set up (import, configuration, connection); it is reported, not raised."""


# --- CACHES ----------------------------------------------------------------------------------------


def redis_cache(url: str) -> dict[str, Any]:
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}


def pymemcache_cache(location: str) -> dict[str, Any]:
    return {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": location}


def pylibmc_cache(location: str) -> dict[str, Any]:
    return {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": location}


def fenced_caches(backing: dict[str, Any]) -> CachesConfig:
    """The configuration under test: alias "fenced" wraps alias "backing"."""
    fenced = {
        "BACKEND": "django_fence.backends.FencedCache",
        "LOCATION": "backing",
        "TIMEOUT": TTL,
        "OPTIONS": dict(FENCE_OPTIONS),
    }
    # "default" is LocMem so that nothing reaches a server through Django's implicit default.
    locmem = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {"default": locmem, "backing": backing, "fenced": fenced}


def configure_django(caches_config: CachesConfig) -> None:
    """Configure Django in this spawned process; nothing is inherited from the parent."""
    import django
    from django.conf import settings

    settings.configure(
        CACHES=caches_config,
        INSTALLED_APPS=[],
        DATABASES={},
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="django-fence-benchmark",
        USE_TZ=True,
    )
    django.setup()


# --- the callers, inside each child ----------------------------------------------------------------


@dataclass
class RowContext:
    """Everything a row's setup needs inside one child process."""

    key: str
    threads: int
    recompute_s: float
    servers: Servers
    counter: Counter = field(default_factory=Counter)

    @property
    def expected(self) -> str:
        return f"computed:{self.key}"

    def recompute(self) -> str:
        """The expensive function: counts itself, then takes --recompute-ms."""
        self.counter.add()
        time.sleep(self.recompute_s)
        return self.expected

    async def arecompute(self) -> str:
        """The same for asyncio callers, which must not block their event loop."""
        self.counter.add()
        await asyncio.sleep(self.recompute_s)
        return self.expected


def warm_up_key(ctx: RowContext) -> str:
    """A key of the caller's own for its warm-up call.

    Each caller does one get-or-compute on it before the start, so that connections, lazily built
    clients and Lua scripts are ready: the row measures the stampede, not a cold process.
    """
    return f"{ctx.key}:warm-up:{uuid.uuid4().hex[:12]}"


def warm_value() -> str:
    return "warm"


StartTogether = Callable[[], None]
RowRunner = Callable[[RowContext, StartTogether], CallerStats]


def threaded(setup: Callable[[RowContext], ThreadSetup]) -> RowRunner:
    """Run a row as T threads: each prepares its call, all wait, then all call at once."""

    def run(ctx: RowContext, start_together: StartTogether) -> CallerStats:
        prepare = setup(ctx)
        stats = CallerStats()
        ready = threading.Barrier(ctx.threads + 1)
        go, cancelled = threading.Event(), threading.Event()
        setup_errors: list[str] = []

        def worker() -> None:
            call: Call | None = None
            try:
                call = prepare()
            except Exception as exc:
                setup_errors.append(describe(exc))
            ready.wait()
            go.wait()
            if call is None or cancelled.is_set():
                return
            started = time.perf_counter()
            try:
                value = call()
            except Exception as exc:
                stats.record_error(started, exc)
            else:
                stats.record(started, value, ctx.expected)

        workers = [threading.Thread(target=worker, daemon=True) for _ in range(ctx.threads)]
        for thread in workers:
            thread.start()
        ready.wait()
        launched = False
        try:
            if setup_errors:
                raise SetupError(setup_errors[0])
            start_together()
            launched = True
        finally:
            if not launched:
                cancelled.set()
            go.set()  # release the threads either way, so that the process can end
        for thread in workers:
            thread.join(RUN_TIMEOUT)
        return stats

    return run


def get_or_set_setup(alias: str) -> Callable[[RowContext], ThreadSetup]:
    """``caches[alias].get_or_set(key, fn, 300)``; Django already gives each thread its own cache."""

    def setup(ctx: RowContext) -> ThreadSetup:
        from django.core.cache import caches

        def prepare() -> Call:
            cache = caches[alias]
            cache.get_or_set(warm_up_key(ctx), warm_value, TTL)
            return lambda: cache.get_or_set(ctx.key, ctx.recompute, TTL)

        return prepare

    return setup


def cache_page_setup(ctx: RowContext) -> ThreadSetup:
    """A view under ``cache_page(300)`` whose body is the recompute, called with RequestFactory."""
    from django.core.cache import caches
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory
    from django.views.decorators.cache import cache_page

    @cache_page(TTL, key_prefix=ctx.key)
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(ctx.recompute())

    factory = RequestFactory()

    def prepare() -> Call:
        caches["default"].get_or_set(warm_up_key(ctx), warm_value, TTL)  # the view's cache, warm
        request = factory.get("/bench/")
        return lambda: view(request).content.decode()

    return prepare


def dogpile_setup(ctx: RowContext) -> ThreadSetup:
    """A dogpile.cache region on Redis with its distributed (Redis) lock, shared by the threads."""
    from dogpile.cache import make_region

    url = urlsplit(ctx.servers.redis)
    arguments = {
        "host": url.hostname,
        "port": url.port,
        "db": int(url.path.strip("/") or 0),
        "distributed_lock": True,
        "thread_local_lock": False,
        "lock_timeout": 10,
        "redis_expiration_time": TTL,
    }
    region = make_region().configure("dogpile.cache.redis", expiration_time=TTL, arguments=arguments)
    # The threads share the region's redis-py pool: open T connections now, as each thread's own
    # Django client does in its warm-up, so that no row's latency includes connecting.
    pool = region.backend.writer_client.connection_pool
    for connection in [pool.get_connection() for _ in range(ctx.threads)]:
        pool.release(connection)

    def prepare() -> Call:
        region.get_or_create(warm_up_key(ctx), warm_value)
        return lambda: region.get_or_create(ctx.key, ctx.recompute)

    return prepare


def run_cachefence(ctx: RowContext, start_together: StartTogether) -> CallerStats:
    """cachefence is asyncio-only: T coroutines on one event loop per process stand in for T threads."""
    return asyncio.run(_cachefence_callers(ctx, start_together))


async def _cachefence_callers(ctx: RowContext, start_together: StartTogether) -> CallerStats:
    from cachefence import CacheFence
    from redis.asyncio import BlockingConnectionPool, Redis

    # cachefence's README asks for a BlockingConnectionPool sized for the concurrency.
    pool = BlockingConnectionPool.from_url(ctx.servers.redis, max_connections=ctx.threads, timeout=15)
    client = Redis(connection_pool=pool)
    # The lock timeout and wait deadline of the FencedCache rows; beta is 1.0 in both.
    fence: CacheFence[str] = CacheFence(client, beta=1.0, lock_timeout=10.0, wait_for_lock=5.0)
    stats = CallerStats()
    go = asyncio.Event()

    async def caller() -> None:
        await go.wait()
        started = time.perf_counter()
        try:
            value = await fence.get_or_set(key=ctx.key, ttl=TTL, recompute=ctx.arecompute)
        except Exception as exc:
            stats.record_error(started, exc)
        else:
            stats.record(started, value, ctx.expected)

    try:
        try:  # concurrent warm-ups open the T connections, and register the release script
            await asyncio.gather(
                *(fence.get_or_set(key=warm_up_key(ctx), ttl=TTL, recompute=warm_value) for _ in range(ctx.threads))
            )
        except Exception as exc:
            raise SetupError(describe(exc)) from exc
        tasks = [asyncio.create_task(caller()) for _ in range(ctx.threads)]
        await asyncio.to_thread(start_together)
        go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), RUN_TIMEOUT)
    finally:
        await client.aclose()
    return stats


@dataclass(frozen=True)
class StampedeRow:
    """One line of the stampede table: its CACHES and how its callers run."""

    name: str
    caches: Callable[[Servers], CachesConfig]
    run: RowRunner
    note: str = ""


ROWS = [
    StampedeRow(
        "django get_or_set (redis)",
        lambda s: {"default": redis_cache(s.redis)},
        threaded(get_or_set_setup("default")),
    ),
    StampedeRow(
        "django get_or_set (memcached)",
        lambda s: {"default": pymemcache_cache(s.memcached)},
        threaded(get_or_set_setup("default")),
        note="PyMemcacheCache",
    ),
    StampedeRow(
        "django cache_page (redis)",
        lambda s: {"default": redis_cache(s.redis)},
        threaded(cache_page_setup),
    ),
    StampedeRow("dogpile.cache (redis lock)", lambda s: {}, threaded(dogpile_setup)),
    StampedeRow("cachefence (redis)", lambda s: {}, run_cachefence, note="asyncio: T coroutines/process"),
    StampedeRow(
        "FencedCache (redis)",
        lambda s: fenced_caches(redis_cache(s.redis)),
        threaded(get_or_set_setup("fenced")),
    ),
    StampedeRow(
        "FencedCache (memcached)",
        lambda s: fenced_caches(pylibmc_cache(s.memcached)),
        threaded(get_or_set_setup("fenced")),
        note="wraps PyLibMCCache",
    ),
]
ROWS_BY_NAME = {row.name: row for row in ROWS}


def view_rows(server: str, backing: Callable[[Servers], dict[str, Any]]) -> list[ViewStormRow]:
    """The view storm's rows on one server.

    The pages share one backing alias (the client the fenced rows wrap), so that they differ only
    in the decorator; "no grace" expires outright, as cache_page does.
    """

    def site_caches(servers: Servers) -> CachesConfig:
        return fenced_caches(backing(servers))

    grace = f"GRACE {FENCE_OPTIONS['GRACE']}: from storm 2 on, the old page while 1 re-renders"
    return [
        ViewStormRow(f"view storm: cache_page ({server})", "cache_page", site_caches, "Django's"),
        ViewStormRow(f"view storm: fenced_cache_page ({server})", "fenced_cache_page", site_caches, grace),
        ViewStormRow(
            f"view storm: fenced_cache_page no grace ({server})",
            "fenced_cache_page_no_grace",
            site_caches,
            "grace=0: every storm cold",
        ),
    ]


VIEW_ROWS = [
    *view_rows("redis", lambda s: redis_cache(s.redis)),
    *view_rows("memcached", lambda s: pylibmc_cache(s.memcached)),
]

# (name for --only, label in the table, backing cache): the hit path wraps what the fenced rows wrap.
HIT_ROWS: list[tuple[str, str, Callable[[Servers], dict[str, Any]]]] = [
    ("hit path (redis)", "redis: RedisCache", lambda s: redis_cache(s.redis)),
    ("hit path (memcached)", "memcached: PyLibMCCache", lambda s: pylibmc_cache(s.memcached)),
]


def stampede_child(
    row_name: str, servers: Servers, key: str, threads: int, recompute_s: float, gate: StartGate, results: Any
) -> None:
    """One process of a stampede row; puts one plain dict on ``results``."""
    row = ROWS_BY_NAME[row_name]
    ctx = RowContext(key=key, threads=threads, recompute_s=recompute_s, servers=servers)
    started = False

    def start_together() -> None:
        nonlocal started
        gate.wait()
        started = True

    try:
        configure_django(row.caches(servers))
        stats = row.run(ctx, start_together)
    except threading.BrokenBarrierError:
        results.put({"aborted": True})  # another process failed to set up and reports why
    except Exception as exc:
        if not started:
            gate.abort()
        results.put({"error": str(exc) if isinstance(exc, SetupError) else describe(exc)})
    else:
        results.put({**stats.as_dict(), "recomputes": ctx.counter.value})


def hit_path_child(backing: dict[str, Any], servers: Servers, hits: int, results: Any) -> None:
    """Time plain ``get`` and fenced ``get_or_set`` on one warm key, in alternating blocks.

    Then count the server commands of each kind of call (the design promises one per hit).
    """
    try:
        configure_django(fenced_caches(backing))
        from django.core.cache import caches

        plain, fenced = caches["backing"], caches["fenced"]
        key, counter = f"bench:{uuid.uuid4().hex}", Counter()

        def compute() -> str:
            counter.add()
            return "warm value"

        fenced.get_or_set(key, compute, TTL)
        if plain.get(key) is None:  # the fence may store under a key of its own: make this a hit too
            plain.set(key, "warm value", TTL)
        operations: dict[str, Call] = {
            "plain": lambda: plain.get(key),
            "fenced": lambda: fenced.get_or_set(key, compute, TTL),
        }
        for operation in operations.values():  # connections, code paths and CPU caches warm
            time_calls(operation, HIT_WARMUP)
        warm_recomputes = counter.value
        timings: dict[str, list[float]] = {name: [] for name in operations}
        for block in range(HIT_BLOCKS):
            for name in list(operations)[:: 1 if block % 2 == 0 else -1]:
                timings[name].extend(time_calls(operations[name], max(1, hits // HIT_BLOCKS)))
        recomputes = counter.value - warm_recomputes
        commands = {name: commands_per_call(operation, servers) for name, operation in operations.items()}
    except Exception as exc:
        results.put({"error": describe(exc)})
        return
    results.put({"timings_us": timings, "recomputes": recomputes, "commands": commands})


def commands_per_call(operation: Call, servers: Servers, calls: int = 1000) -> float:
    """Server commands per call, averaged over ``calls`` sequential calls."""
    overhead = server_ops_overhead(servers)
    before = server_ops(servers)
    time_calls(operation, calls)
    return (server_ops(servers) - before - overhead) / calls


# --- the parent ------------------------------------------------------------------------------------


@dataclass
class RowResult:
    """One line of the stampede table."""

    name: str
    note: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)
    server_ops: int | None = None
    error: str = ""

    def total(self, name: str) -> int:
        return sum(report[name] for report in self.reports)

    def cells(self) -> list[str]:
        if self.error:
            return [self.name, "-", "-", "-", "-", "-", "-", "error (below)"]
        latencies = [ms for report in self.reports for ms in report["latencies_ms"]]
        return [
            self.name,
            str(self.total("recomputes")),
            str(self.total("errors")),
            str(self.total("bad_values")),
            f"{percentile(latencies, 0.50):.1f}",
            f"{percentile(latencies, 0.99):.1f}",
            "-" if self.server_ops is None else str(self.server_ops),
            self.note,
        ]

    def details(self) -> list[str]:
        if self.error:
            return [self.error]
        return sorted({sample for report in self.reports for sample in report["samples"]})


def run_stampede_row(row: StampedeRow, servers: Servers, args: argparse.Namespace, ops_overhead: int) -> RowResult:
    """Run one row in P fresh processes on a fresh key and sum up what they report."""
    flush(servers)
    gate = StartGate(args.processes)
    key = f"bench:{uuid.uuid4().hex}"  # fresh per row: no row can read another's value
    argset = (row.name, servers, key, args.threads, args.recompute_ms / 1000, gate)
    before: list[int] = []
    reports = run_processes(
        stampede_child,
        [argset] * args.processes,
        timeout=START_TIMEOUT + RUN_TIMEOUT,
        gate=gate,
        before_start=lambda: before.append(server_ops(servers)),  # after every warm-up
    )
    result = RowResult(row.name, note=row.note)
    errors = [report["error"] for report in reports if "error" in report]
    if errors or any("aborted" in report for report in reports):
        result.error = errors[0] if errors else "a child process aborted"
        return result
    result.reports = reports
    if before:
        result.server_ops = server_ops(servers) - before[0] - ops_overhead
    return result


def run_hit_path(label: str, backing: dict[str, Any], servers: Servers, hits: int) -> tuple[list[str], str]:
    """One line of the hit-path table, and an error or a warning for below it."""
    flush(servers)
    [report] = run_processes(hit_path_child, [(backing, servers, hits)], timeout=START_TIMEOUT + RUN_TIMEOUT)
    if "error" in report:
        return [label, "-", "-", "-", "-", "-", "error (below)"], report["error"]
    plain, fenced = report["timings_us"]["plain"], report["timings_us"]["fenced"]
    ratio = percentile(fenced, 0.5) / percentile(plain, 0.5)
    cells = [label] + [f"{percentile(values, q):.1f}" for values in (plain, fenced) for q in (0.5, 0.99)]
    commands = f"{report['commands']['plain']:.2f} / {report['commands']['fenced']:.2f}"
    warning = f"{report['recomputes']} recomputes on a warm key" if report["recomputes"] else ""
    return [*cells, commands, f"{(ratio - 1) * 100:+.1f}% ({ratio:.2f}x)"], warning


def report_stampede(results: list[RowResult], callers: int) -> None:
    headers = ["row", "recomputes", "errors", "bad values", "p50 ms", "p99 ms", "server cmds", "note"]
    print(f"\nStampede: {callers} concurrent callers on one cold key\n")
    print(format_table(headers, [result.cells() for result in results]))
    details = [f"  {result.name}: {detail}" for result in results for detail in result.details()]
    if details:
        print("\nerrors:", *details, sep="\n")


def report_hit_path(lines: list[tuple[list[str], str]], hits: int) -> None:
    headers = ["backend", "plain get p50", "p99", "fenced get_or_set p50", "p99", "cmds/call", "overhead (p50)"]
    print(f"\nHit path: one warm key, {hits} calls of each, microseconds per call")
    print("cmds/call: server commands per call, plain / fenced, over 1000 further calls\n")
    print(format_table(headers, [cells for cells, _ in lines]))
    details = [f"  {cells[0]}: {detail}" for cells, detail in lines if detail]
    if details:
        print("\nerrors:", *details, sep="\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Stampede and hit-path benchmark of FencedCache and peers.")
    parser.add_argument("--processes", type=int, default=4, metavar="P", help="processes per row (4)")
    parser.add_argument("--threads", type=int, default=50, metavar="T", help="threads per process (50)")
    parser.add_argument("--recompute-ms", type=float, default=50, metavar="MS", help="recompute time (50)")
    parser.add_argument("--view-requests", type=int, default=200, metavar="N", help="view storm: requests (200)")
    parser.add_argument("--view-workers", type=int, default=4, metavar="W", help="view storm: gunicorn workers (4)")
    parser.add_argument(
        "--view-threads", type=int, default=50, metavar="T", help="view storm: threads per gthread worker (50)"
    )
    parser.add_argument("--view-storms", type=int, default=3, metavar="K", help="view storm: storms per row (3)")
    parser.add_argument("--view-render-ms", type=float, default=100, metavar="MS", help="view storm: render (100)")
    parser.add_argument(
        "--view-render", choices=["sleep", "cpu"], default="sleep", help="view storm: render by waiting or computing"
    )
    parser.add_argument(
        "--hits", type=int, default=20000, metavar="N", help="hit-path calls of each kind; 0 skips it (20000)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="ROWNAME",
        help="run only rows whose name contains this, case-insensitive; repeatable; 'hit path' picks those",
    )
    args = parser.parse_args(argv)
    names = [row.name for row in ROWS] + [row.name for row in VIEW_ROWS] + [name for name, _, _ in HIT_ROWS]
    if args.only and not any(selected(name, args.only) for name in names):
        parser.error(f"--only matches no row; the rows are: {', '.join(names)}")
    if args.processes < 1 or args.threads < 1 or args.hits < 0 or args.recompute_ms < 0:
        parser.error("--processes and --threads must be at least 1, --hits and --recompute-ms at least 0")
    if min(args.view_requests, args.view_workers, args.view_threads, args.view_storms) < 1 or args.view_render_ms < 0:
        parser.error("--view-requests, -workers, -threads and -storms must be at least 1, --view-render-ms at least 0")
    return args


def selected(name: str, only: list[str] | None) -> bool:
    return not only or any(part.lower() in name.lower() for part in only)


def view_storm_options(args: argparse.Namespace) -> ViewStormOptions:
    return ViewStormOptions(
        requests=args.view_requests,
        workers=args.view_workers,
        threads=args.view_threads,
        storms=args.view_storms,
        render_ms=args.view_render_ms,
        render=args.view_render,
    )


def stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends the run as Ctrl-C does: through every ``finally``, which stops our servers."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    rows = [row for row in ROWS if selected(row.name, args.only)]
    storm_rows = [row for row in VIEW_ROWS if selected(row.name, args.only)]
    view_options = view_storm_options(args)
    hit_rows = [row for row in HIT_ROWS if args.hits and selected(row[0], args.only)]
    callers = args.processes * args.threads
    print(f"$ {shlex.join(sys.orig_argv)}")
    print(
        f"stampede: {args.processes} processes x {args.threads} threads = {callers} callers on one cold key, "
        f"recompute {args.recompute_ms:g} ms (sleep)\nhit path: {args.hits} sequential calls of each kind "
        f"in one process, {HIT_BLOCKS} alternating blocks\nFencedCache OPTIONS: {FENCE_OPTIONS}\n"
        f"view storm: {view_options.storms} x {view_options.requests} concurrent GETs, gunicorn "
        f"{view_options.workers} gthread workers x {view_options.threads} threads, "
        f"render {view_options.render_ms:g} ms ({view_options.render})"
    )
    with running_servers() as servers:
        print(versions(servers, PACKAGES), flush=True)
        ops_overhead = server_ops_overhead(servers)
        results = []
        for row in rows:
            print(f"... {row.name}", file=sys.stderr, flush=True)
            try:
                results.append(run_stampede_row(row, servers, args, ops_overhead))
            except Exception as exc:  # e.g. a server died: report the row and go on with the next
                results.append(RowResult(row.name, error=describe(exc)))
        view_results: list[ViewStormResult] = []
        for view_row in storm_rows:
            print(f"... {view_row.name}", file=sys.stderr, flush=True)
            try:
                view_results.append(run_view_storm_row(view_row, servers, view_options))
            except Exception as exc:  # gunicorn did not start, a server died: report the row, go on
                view_results.append(failed(view_row, exc))
        hit_lines = []
        for name, label, backing in hit_rows:
            print(f"... {name}", file=sys.stderr, flush=True)
            try:
                hit_lines.append(run_hit_path(label, backing(servers), servers, args.hits))
            except Exception as exc:
                hit_lines.append(([label, "-", "-", "-", "-", "-", "error (below)"], describe(exc)))
    if results:
        report_stampede(results, callers)
    if view_results:
        report_view_storm(view_results, view_options)
    if hit_lines:
        report_hit_path(hit_lines, args.hits)


if __name__ == "__main__":
    main()
