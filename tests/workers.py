"""Code that runs in child processes (spawned, so each has its own Django and connections)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from typing import Any

CONTEXT = multiprocessing.get_context("spawn")


def run_in_processes(processes: int, function: str, caches_config: dict[str, Any], timeout: float = 90,
                     **kwargs: Any) -> list[dict[str, Any]]:
    """Run ``function`` (a name in this module) in N spawned processes that start together."""
    calls = [(_child, (function, json.dumps(caches_config))) for _ in range(processes)]
    return spawn_together(calls, timeout, kwargs)


def spawn_together(calls: list[tuple[Any, tuple[Any, ...]]], timeout: float = 90,
                   kwargs: dict[str, Any] | None = None) -> list[Any]:
    """Run each (child function, args) in its own spawned process; all get one barrier to start together.

    A child is called as ``child(*args, barrier, queue, kwargs)`` and puts one report on
    the queue, or ``{"crash": traceback}``. Returns the reports in the order the
    children finished; a crash fails the test with the child's traceback.
    """
    barrier = CONTEXT.Barrier(len(calls))
    queue = CONTEXT.Queue()
    children = [CONTEXT.Process(target=child, args=(*args, barrier, queue, kwargs or {})) for child, args in calls]
    for child in children:
        child.start()
    try:
        reports = [queue.get(timeout=timeout) for _ in children]
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    crashes = [r["crash"] for r in reports if isinstance(r, dict) and "crash" in r]
    assert not crashes, crashes[0]
    return reports


def setup_django(caches_json: str) -> None:
    os.environ["FENCE_TEST_CACHES"] = caches_json
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()


def _child(function: str, caches_json: str, barrier: Any, queue: Any, kwargs: dict[str, Any]) -> None:
    try:
        setup_django(caches_json)
        queue.put(globals()[function](barrier=barrier, **kwargs))
    except BaseException:
        queue.put({"crash": traceback.format_exc()})


def hit_cold_key(barrier: Any, key: str, threads: int, compute_seconds: float, alias: str = "default",
                 use_async: bool = False, stamp: bool = False, ttl: float = 300) -> dict[str, Any]:
    """``threads`` threads of this process call get_or_set(key) at once; count the recomputes."""
    from django.core.cache import caches

    computed = []
    lock = threading.Lock()

    def compute() -> str:
        with lock:
            computed.append(1)
        time.sleep(compute_seconds)
        if stamp:  # the value says when it was ready: callers measure how long it took to reach them
            return time.time()
        return f"value-{os.getpid()}-{uuid.uuid4().hex}"

    values: list[Any] = []
    errors: list[str] = []
    latencies: list[float] = []
    returned: list[float] = []
    start = threading.Barrier(threads)

    def call() -> None:
        cache = caches[alias]
        cache.get("warm-up")  # connect before the storm, not during it
        start.wait()
        began = time.monotonic()
        try:
            if use_async:
                import asyncio

                value = asyncio.run(cache.aget_or_set(key, compute, ttl))
            else:
                value = cache.get_or_set(key, compute, ttl)
            values.append(value)
            returned.append(time.time())
        except Exception as exc:
            errors.append(repr(exc))
        latencies.append(time.monotonic() - began)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    barrier.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"recomputes": len(computed), "values": values, "errors": errors, "latencies": latencies,
            "returned": returned}


def hold_lock_forever(barrier: Any, key: str, started_path: str) -> dict[str, Any]:
    """Lead a recompute that never ends: the parent SIGKILLs this process mid-recompute."""
    from django.core.cache import caches

    def compute() -> str:
        with open(started_path, "w") as marker:
            marker.write("started")
        time.sleep(600)
        return "never"

    caches["default"].get_or_set(key, compute, 300)
    return {}


def steady_traffic(barrier: Any, key: str, threads: int, seconds: float, ttl: float,
                   compute_seconds: float, skews: tuple[float, ...] = (0.0,)) -> dict[str, Any]:
    """Threads read ``key`` in a loop for ``seconds``; the value expires every ``ttl`` seconds."""
    from django.core.cache import caches

    computed: list[tuple[float, float]] = []
    lock = threading.Lock()

    def compute() -> float:
        began = time.time()
        time.sleep(compute_seconds)
        with lock:
            computed.append((began, time.time()))
        return began

    slow: list[float] = []
    skew = skews[barrier.wait() % len(skews)]  # each process its own clock offset
    stop = time.monotonic() + seconds

    def loop() -> None:
        cache = caches["default"]
        cache._fence().clock = lambda: time.time() + skew
        while time.monotonic() < stop:
            began = time.monotonic()
            cache.get_or_set(key, compute, ttl)
            if time.monotonic() - began > compute_seconds / 2:
                slow.append(time.monotonic() - began)
            time.sleep(0.005)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"computed": computed, "slow": slow}


def storm_twice(barrier: Any, key: str, threads: int, compute_seconds: float) -> dict[str, Any]:
    """Two storms on one key, the second after the first value expired (GRACE=0, ttl 1 s).

    Every process saw the first value, so the second leader's lock entry says
    when it expects to finish: this measures waiters that cannot be woken.
    """
    hit_cold_key(barrier, key, threads, compute_seconds, stamp=True, ttl=1)
    time.sleep(1.3)
    return hit_cold_key(barrier, key, threads, compute_seconds, stamp=True, ttl=1)


def storm_page(barrier: Any, path: str, threads: int, middleware: list[str] | None = None) -> dict[str, Any]:
    """``threads`` threads of this process GET ``path`` at once through Django's test client."""
    from django.conf import settings
    from django.test import Client

    if middleware is not None:
        settings.MIDDLEWARE = middleware

    bodies: list[str] = []
    statuses: list[int] = []
    errors: list[str] = []
    start = threading.Barrier(threads)

    def get() -> None:
        client = Client()
        start.wait()
        try:
            response = client.get(path)
            statuses.append(response.status_code)
            bodies.append(response.content.decode())
        except BaseException:
            errors.append(traceback.format_exc())

    workers = [threading.Thread(target=get) for _ in range(threads)]
    barrier.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return {"bodies": bodies, "statuses": statuses, "errors": errors}


def bump_counter(barrier: Any, kind: str, location: str, key: str, times: int) -> dict[str, Any]:
    """Increment one counter ``times`` times as soon as every process is ready."""
    from django.core.cache import caches

    from django_fence.counters import CounterService

    if kind == "raw_pylibmc":
        import pylibmc

        service = CounterService(pylibmc.Client([location], behaviors={"ketama": True}))
    else:
        service = CounterService(caches["counters"])
    service.get_count("warm-up")
    seen, errors = [], 0
    barrier.wait()
    for _ in range(times):
        try:
            seen.append(service.increment(key))
        except Exception:
            errors += 1
    return {"seen": seen, "errors": errors}


def enqueue_many(barrier: Any, times: int) -> dict[str, Any]:
    """Enqueue ``times`` distinct messages on the votes alias as soon as every process is ready."""
    from django.core.cache import caches

    from django_fence.queues import WriteBehindQueue

    queue = WriteBehindQueue(caches["votes"], "polls-votes")
    caches["votes"].get("warm-up")
    messages = [f"{os.getpid()}:{i}" for i in range(times)]
    barrier.wait()
    return {"slots": [queue.enqueue(m) for m in messages], "messages": messages}
