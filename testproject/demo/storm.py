"""Stampedes on purpose: many threads call get_or_set on one cold key, or request one cold page, at once."""

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any
from wsgiref.util import setup_testing_defaults

from django.core.cache import caches, close_caches
from django.core.handlers.wsgi import WSGIHandler

from .report import COST_SECONDS

logger = logging.getLogger(__name__)

STORM_SIZE = 50
STORM_TIMEOUT = 30


@dataclass(frozen=True)
class StormResult:
    """What a storm did: how many callers, computations, distinct values and errors."""

    callers: int
    computations: int
    distinct_values: int
    errors: int
    seconds: float


def run_storm(callers: int = STORM_SIZE, alias: str = "default") -> StormResult:
    """Let `callers` threads call ``caches[alias].get_or_set`` on a fresh key together.

    A stampede-proof cache runs the computation once; a plain cache runs it
    about once per caller.
    """
    key = f"demo:storm:{uuid.uuid4().hex}"
    lock = threading.Lock()
    runs = 0
    # Every thread waits here so that all calls land on the cold key at once.
    start_line = threading.Barrier(callers, timeout=10)

    def compute() -> str:
        nonlocal runs
        with lock:
            runs += 1
        time.sleep(COST_SECONDS)
        return uuid.uuid4().hex

    def call() -> str:
        start_line.wait()
        try:
            return caches[alias].get_or_set(key, compute, STORM_TIMEOUT)
        finally:
            # caches[...] is per thread; close what this thread opened, as
            # Django does at the end of a request.
            close_caches()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=callers, thread_name_prefix="storm") as pool:
        futures = [pool.submit(call) for _ in range(callers)]
    values, errors = set(), 0
    for future in futures:
        if (exc := future.exception()) is not None:
            errors += 1
            logger.error("storm caller failed on %s", key, exc_info=exc)
        else:
            values.add(future.result())
    return StormResult(callers, runs, len(values), errors, time.perf_counter() - started)


@dataclass(frozen=True)
class RequestStormResult:
    """What a request storm did: how many requests, how many answered 200, the slowest, the rest failed."""

    requests: int
    ok: int
    errors: int
    slowest: float
    seconds: float


def run_request_storm(path: str, host: str, scheme: str = "http", requests: int = STORM_SIZE) -> RequestStormResult:
    """Send `requests` GETs of `path` at once through Django's whole WSGI stack, from as many threads.

    The requests run in this process, as a WSGI server would run them, so a
    storm needs no second worker (runserver and one sync worker both work).
    `host` and `scheme` are the page's, so the requests hit the same cache keys
    a browser does. The `path` may carry a query string.
    """
    handler = WSGIHandler()  # the middleware stack of the settings, as runserver builds it
    path_info, _, query = path.partition("?")
    start_line = threading.Barrier(requests, timeout=10)

    def request() -> float:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "HTTP_HOST": host,
            "wsgi.url_scheme": scheme,
            "wsgi.input": BytesIO(),
        }
        setup_testing_defaults(environ)
        status: list[str] = []
        start_line.wait()
        started = time.perf_counter()
        body = handler(environ, lambda line, headers, exc_info=None: status.append(line))
        try:
            b"".join(body)
        finally:
            body.close()  # sends request_finished: Django closes this thread's cache and DB connections
        if not status[0].startswith("200"):
            raise RuntimeError(f"GET {path} answered {status[0]}")
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=requests, thread_name_prefix="request-storm") as pool:
        futures = [pool.submit(request) for _ in range(requests)]
    durations, errors = [], 0
    for future in futures:
        if (exc := future.exception()) is not None:
            errors += 1
            logger.error("storm request failed on %s", path, exc_info=exc)
        else:
            durations.append(future.result())
    return RequestStormResult(
        requests, len(durations), errors, max(durations, default=0.0), time.perf_counter() - started
    )
