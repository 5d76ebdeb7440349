"""The demo's sample prioritized stream, shown by the admin's Fence dashboard."""

from __future__ import annotations

from django_fence.dashboard import connections

SAMPLE_STREAM = "jobs"


def seed_sample_stream() -> int:
    """Fill the stream "jobs" on the admin's first stream server unless it has items; how many were added."""
    servers = list(connections().values())
    if not servers:
        return 0
    streams = servers[0].streams()
    if streams.pslen(SAMPLE_STREAM):
        return 0
    items = [(f"job-{n:03}", f'{{"task": "resize", "image": {n}}}', n % 17) for n in range(250)]
    items.append(("report", "A long value: " + "lorem ipsum " * 20, 30))
    items.append(("<b>escaped</b>", "<script>alert('shown as text')</script>", 25))
    return len(streams.psaddmany(SAMPLE_STREAM, items))
