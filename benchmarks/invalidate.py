"""Invalidating a page with many cached variants, and the expiry spread JITTER gives.

    .venv/bin/python benchmarks/invalidate.py [--variants 1000] [--keys 1000]

Part 1: one page cached in N variants (Vary: X-Variant) through fenced_cache_page,
on Redis and on memcached. Dropping every variant with ``invalidate_page`` is
compared with what Django offers: computing each variant's key with
``get_cache_key`` (one request per variant, the header-list read each time)
and deleting it. Round trips are counted on the servers.

Part 2: N keys written together through ``get_or_set(key, f, 60)`` with
JITTER 0 and 0.1: the most keys whose soft expiry falls in one second.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import flush, format_table, running_servers, server_ops, server_ops_overhead


def caches_for(kind: str, location: str, jitter: float = 0.0) -> dict[str, Any]:
    backend = {"redis": "django.core.cache.backends.redis.RedisCache",
               "memcached": "django.core.cache.backends.memcached.PyLibMCCache"}[kind]
    return {
        "backing": {"BACKEND": backend, "LOCATION": location},
        "default": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "backing",
                    "OPTIONS": {"JITTER": jitter, "BETA": 0}},
    }


def setup(caches: dict[str, Any]) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="bench", ALLOWED_HOSTS=["*"], USE_TZ=True, CACHES=caches,
                           INSTALLED_APPS=["django_fence"], DATABASES={})
        import django

        django.setup()
    else:
        from django.test.utils import override_settings

        override_settings(CACHES=caches).enable()


def variants_row(kind: str, location: str, servers: Any, count: int) -> list[list[str]]:
    from django.core.cache import caches
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory
    from django.utils.cache import get_cache_key, patch_vary_headers

    from django_fence import fenced_cache_page, invalidate_page

    setup(caches_for(kind, location))

    def body(request: HttpRequest) -> HttpResponse:
        response = HttpResponse(f"variant {request.headers.get('X-Variant')}")
        patch_vary_headers(response, ["X-Variant"])
        return response

    view = fenced_cache_page(600)(body)
    requests = [RequestFactory(headers={"X-Variant": str(i)}).get("/page/") for i in range(count)]
    overhead = server_ops_overhead(servers)
    rows = []
    for name in ("invalidate_page", "get_cache_key + delete"):
        flush(servers)
        for request in requests:
            view(request)
        before, started = server_ops(servers), time.perf_counter()
        if name == "invalidate_page":
            invalidate_page("http://testserver/page/", soft=False)
        else:
            cache = caches["default"]
            for request in requests:
                cache.delete(get_cache_key(request, cache=cache))
        elapsed = time.perf_counter() - started
        ops = server_ops(servers) - before - overhead
        rows.append([f"{name} ({kind})", f"{count}", f"{ops}", f"{elapsed * 1000:.1f}"])
    return rows


def spread_row(kind: str, location: str, servers: Any, count: int, jitter: float) -> list[str]:
    from django.core.cache import caches

    setup(caches_for(kind, location, jitter))
    flush(servers)
    cache = caches["default"]
    for index in range(count):
        cache.get_or_set(f"key-{index}", index, 60)
    entries = caches["backing"].get_many([f"key-{index}" for index in range(count)])
    per_second = collections.Counter(int(entry.soft_expiry) for entry in entries.values())
    lifetimes = [entry.soft_expiry - entry.stored_at for entry in entries.values()]
    return [f"JITTER {jitter:g} ({kind})", f"{len(entries)}", f"{max(per_second.values())}",
            f"{min(lifetimes):.1f}-{max(lifetimes):.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=1000, help="cached variants of the page")
    parser.add_argument("--keys", type=int, default=1000, help="keys written together")
    args = parser.parse_args()
    print("$ .venv/bin/python benchmarks/invalidate.py " + " ".join(sys.argv[1:]))
    with running_servers() as servers:
        locations = {"redis": servers.redis, "memcached": servers.memcached}
        rows = [row for kind, location in locations.items()
                for row in variants_row(kind, location, servers, args.variants)]
        print(format_table(["drop every variant of one page", "variants", "round trips", "ms"], rows))
        print()
        spread = [spread_row(kind, location, servers, args.keys, jitter)
                  for kind, location in locations.items() for jitter in (0.0, 0.1)]
        print(format_table(["keys written together", "keys", "most expiring in one second", "lifetimes s"],
                           spread))
    if os.environ.get("BENCH_JSON"):
        print(json.dumps({"variants": rows, "spread": spread}))


if __name__ == "__main__":
    main()
