"""The fence's numbers for monitoring: one function the metrics view and the admin dashboard share.

``collect()`` gives every FencedCache alias's counters, summed across
processes, and ``history()`` their last hour minute by minute (the
dashboard's chart). ``prometheus_text()`` renders the counters in the
Prometheus text exposition format through ``prometheus_client`` (a custom
collector; the ``metrics`` extra), counters named
``django_fence_<name>_total`` with an ``alias`` label, plus a
``django_fence_recompute_seconds`` summary.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.core.cache import caches

from .conf import configured_caches
from .stats import HISTORY_MINUTES, NAMES, check_minutes

FENCED_BACKEND = "django_fence.backends.FencedCache"
#: The counters, with what each counts (the HELP line of each metric).
COUNTERS = {
    "hits": "Reads served from the cache, fresh.",
    "misses": "Reads that found nothing usable and led a recompute.",
    "stale_served": "Reads served a stale value while one caller refreshed it.",
    "early_refreshes": "Refreshes started early by XFetch before the soft expiry.",
    "recomputes": "Times a value was computed.",
    "lock_waits": "Callers that waited for another caller's recompute.",
    "wait_timeouts": "Waits that reached WAIT_TIMEOUT.",
    "errors": "Backend errors and failed recomputes.",
}
assert set(COUNTERS) | {"recompute_microseconds"} == set(NAMES)


def fenced_aliases() -> list[str]:
    """The aliases in CACHES whose backend is FencedCache."""
    return [alias for alias, config in configured_caches().items() if config.get("BACKEND") == FENCED_BACKEND]


def hit_ratio(counts: Mapping[str, int]) -> float | None:
    """Reads served from the cache (fresh or stale) over all reads; None when there was no read."""
    served = counts["hits"] + counts["stale_served"]
    lookups = served + counts["misses"]
    return served / lookups if lookups else None


def _error(exc: Exception) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"}


def collect() -> dict[str, dict[str, Any]]:
    """Per FencedCache alias: its counters summed across processes, or the error that kept them unread."""
    numbers: dict[str, dict[str, Any]] = {}
    for alias in fenced_aliases():
        try:
            stats = caches[alias].stats()  # type: ignore[attr-defined]
        except Exception as exc:  # a server that is down gives an error entry, not a failed scrape
            numbers[alias] = _error(exc)
            continue
        counts: dict[str, Any] = {name: int(stats[name]) for name in COUNTERS}
        counts["recompute_seconds"] = stats["recompute_microseconds"] / 1_000_000
        counts["hit_ratio"] = hit_ratio(counts)
        numbers[alias] = counts
    return numbers


def history(minutes: int = HISTORY_MINUTES) -> dict[str, dict[str, Any]]:
    """Per FencedCache alias: ``{"points": [...]}``, one point per minute, oldest first, or ``{"error": ...}``.

    A point is ``{"minute": <its start, unix seconds>, "hits": n, "stale_served": n,
    "misses": n, "recomputes": n, "hit_ratio": float | None}``, summed across
    processes. ``minutes`` is 1 to HISTORY_MINUTES (60): ValueError otherwise.
    """
    check_minutes(minutes)  # before the loop: a bad argument is the caller's error, not every alias's
    numbers: dict[str, dict[str, Any]] = {}
    for alias in fenced_aliases():
        try:
            minutes_counted = caches[alias].stats_history(minutes)  # type: ignore[attr-defined]
        except Exception as exc:  # a server that is down gives an error entry, not a failed dashboard
            numbers[alias] = _error(exc)
            continue
        numbers[alias] = {"points": [{"minute": start, **counts, "hit_ratio": hit_ratio(counts)}
                                     for start, counts in minutes_counted]}
    return numbers


class FenceCollector:
    """A prometheus_client collector over ``collect()``: read at scrape time, nothing registered globally."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        numbers = collect()
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"django_fence_{name}", help_text, labels=["alias"])
            for alias, counts in numbers.items():
                if "error" not in counts:
                    family.add_metric([alias], counts[name])
            yield family
        summary = SummaryMetricFamily("django_fence_recompute_seconds", "Time spent computing values.",
                                      labels=["alias"])
        up = GaugeMetricFamily("django_fence_up", "1 if the alias's counters could be read, else 0.", labels=["alias"])
        for alias, counts in numbers.items():
            up.add_metric([alias], 0 if "error" in counts else 1)
            if "error" not in counts:
                summary.add_metric([alias], count_value=counts["recomputes"], sum_value=counts["recompute_seconds"])
        yield summary
        yield up


def prometheus_text() -> tuple[bytes, str]:
    """(the exposition, its content type). Needs prometheus_client: ``pip install django-fence[metrics]``."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FenceCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
