"""The admin's stream page on a stream of 100,000 items, against reading it with good-redis's commands.

    .venv/bin/python benchmarks/admin.py [--items 100000] [--repeat 20]

One redis-server of our own. Rows:

- the whole admin page (login, permission check, Redis, template) through Django's test
  client, first page and a key-prefix search;
- the data of the first page as the admin reads it (``StreamItems``: ZREVRANGE of one
  page, then the values and marks of those items) against what an admin built on
  good-redis's commands would read (``pskeys(desc=True)`` and ``psvalues`` of the whole
  stream, then the first 100), on the same server in the same run;
- the dashboard with 100 streams registered.

Times are medians of ``--repeat`` runs, in milliseconds; the machine is small and noisy,
so read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import format_table, running_servers


def timed(repeat: int, fn: Callable[[], Any]) -> float:
    fn()  # warm up: scripts loaded, templates compiled
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    with running_servers() as servers:
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
        import django
        from django.conf import settings

        settings.DJANGO_FENCE = {"STREAMS_REDIS": {"main": servers.redis}}
        django.setup()
        import redis
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import setup_test_environment
        from django.urls import reverse

        from django_fence.dashboard import StreamItems
        from django_fence.streams import Streams
        from django_fence.streams.keys import StreamKeys

        setup_test_environment()
        call_command("migrate", verbosity=0)
        client = Client()
        client.force_login(User.objects.create_superuser("bench", password="bench"))
        raw = redis.Redis.from_url(servers.redis)
        streams = Streams(raw)
        for start in range(0, args.items, 10_000):
            streams.psaddmany("big", [(f"item-{i:06}", f"value {i}", i) for i in range(start, min(args.items,
                                                                                                   start + 10_000))])
        for n in range(100):
            streams.psadd(f"stream-{n:03}", "k", "v", n)
        page_url = reverse("admin:django_fence_stream", args=("main", "big"))

        def page() -> None:
            response = client.get(page_url)
            assert response.status_code == 200 and b"item-099999" in response.content

        def search() -> None:
            response = client.get(page_url, {"q": "item-0999"})
            assert response.status_code == 200 and b"item-099999" in response.content

        def dashboard() -> None:
            response = client.get(reverse("admin:django_fence_fence_changelist"))
            assert response.status_code == 200 and b"stream-099" in response.content

        def ours() -> None:
            items = StreamItems(raw, StreamKeys("big", False))[0:100]
            assert items[0].key == "item-099999"

        def naive() -> None:
            keys = streams.pskeys("big", desc=True)[:100]
            values = streams.psvalues("big")
            first = [(key, values.get(key.decode())) for key in keys]
            assert first[0][0] == b"item-099999"

        rows = [
            ("admin stream page, first of 100 items (HTTP)", timed(args.repeat, page), ""),
            ("admin stream page, key-prefix search (HTTP)", timed(args.repeat, search), "ZSCAN of the priorities"),
            ("admin dashboard, 100 streams (HTTP)", timed(args.repeat, dashboard), "one pipeline per server"),
        ]
        ours_ms, naive_ms = timed(args.repeat, ours), timed(max(3, args.repeat // 4), naive)
        rows += [
            ("first page's data: StreamItems (ours)", ours_ms, "2 round trips"),
            ("first page's data: pskeys + psvalues (good-redis)", naive_ms,
             f"whole stream; ours {naive_ms / ours_ms:.0f}x faster"),
        ]
        print(f"stream of {args.items:,} items; median of {args.repeat} runs")
        print(format_table(["row", "ms", "note"], [[name, f"{ms:.1f}", note] for name, ms, note in rows]))


if __name__ == "__main__":
    main()
