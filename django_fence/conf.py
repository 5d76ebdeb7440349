"""Every setting of django-fence, its default and its meaning, in one place.

Two kinds of configuration:

* ``settings.DJANGO_FENCE`` (a dict) holds project-wide settings, merged with
  ``DEFAULTS`` in a cached getter that ``setting_changed`` clears, so
  ``override_settings`` and pytest-django's ``settings`` fixture work.
* Per-alias behaviour lives in the ``OPTIONS`` of a ``FencedCache`` entry in
  ``CACHES``; :func:`parse_options` reads it for the backend and for the
  system check alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclasses.dataclass(frozen=True)
class FenceSettings:
    """Project-wide settings (``settings.DJANGO_FENCE``)."""

    #: Seconds between two flushes of a process's statistics to the shared cache.
    STATS_INTERVAL: float = 1.0
    #: Send an RFC 9211 ``Cache-Status`` header on every response of the page layer.
    CACHE_STATUS_HEADER: bool = False
    #: A bearer token that may read the metrics view (compared in constant time); None: staff only.
    METRICS_TOKEN: str | None = None
    #: The cache alias (memcached in production) holding the vote queue, live counters and voter marks.
    POLLS_VOTES_CACHE: str = "votes"
    #: The FencedCache alias that question metadata and database totals are read through.
    POLLS_FENCED_CACHE: str = "default"
    #: The vote queue's key prefix: ``<prefix>-curr``, ``<prefix>-key-N``, ``<prefix>-pending-<choice>``.
    POLLS_QUEUE_PREFIX: str = "polls-votes"
    #: Seconds a taken queue slot may stay empty before the flush reports it lost.
    POLLS_SLOT_GRACE: float = 10.0
    #: Seconds a question's metadata (text, choices, closing time) is served from the fence.
    POLLS_QUESTION_TIMEOUT: int = 60
    #: Seconds the database part of the live totals is served from the fence.
    POLLS_TOTALS_TIMEOUT: int = 2
    #: The Redis servers whose prioritized streams the admin shows: ``{label: "redis://..." URL or a CACHES
    #: alias of a Redis cache}`` (django-redis, Django's RedisCache, or a FencedCache wrapping one).
    STREAMS_REDIS: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Seconds between two refreshes of the admin dashboard's numbers while its tab is visible; the
    #: dashboard waits up to ADMIN_REFRESH_MAX_FACTOR times longer while nothing changes, and not at all
    #: while its tab is hidden.
    ADMIN_REFRESH_INTERVAL: float = 5.0
    ADMIN_REFRESH_MAX_FACTOR: int = 8
    #: Items per page on the admin's stream page.
    ADMIN_PAGE_SIZE: int = 100


DEFAULTS: dict[str, Any] = {
    field.name: field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[operator]
    for field in dataclasses.fields(FenceSettings)
}


@functools.cache
def fence_settings() -> FenceSettings:
    """The project's ``DJANGO_FENCE`` settings merged with the defaults."""
    user = getattr(settings, "DJANGO_FENCE", {})
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"Unknown DJANGO_FENCE settings: {', '.join(sorted(unknown))}.")
    return FenceSettings(**{**DEFAULTS, **user})


@receiver(setting_changed)
def _clear_settings_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "DJANGO_FENCE":
        fence_settings.cache_clear()


def configured_caches() -> dict[str, dict[str, Any]]:
    """settings.CACHES, typed."""
    caches: dict[str, dict[str, Any]] = getattr(settings, "CACHES", {})
    return caches


@dataclasses.dataclass(frozen=True)
class FenceOptions:
    """The ``OPTIONS`` of one ``FencedCache`` alias."""

    #: XFetch's beta: > 1 refreshes earlier, < 1 later, 0 never early.
    beta: float = 1.0
    #: Seconds a lock lives if its holder dies without releasing it.
    lock_timeout: float = 10.0
    #: Longest time a caller waits for another's recompute before taking over.
    wait_timeout: float = 5.0
    #: Seconds after the soft expiry during which the stale value is served while one caller refreshes.
    grace: float = 60.0
    #: Once a waiter on memcached reaches the leader's expected finish, how often it checks (seconds).
    check_interval: float = 0.005
    #: Spread of soft timeouts: each is drawn from timeout x [1 - JITTER, 1 + JITTER], so keys written
    #: together do not expire together.
    jitter: float = 0.0


# OPTIONS key -> (field name, lowest allowed value, lowest is allowed, highest allowed value)
OPTION_FIELDS: dict[str, tuple[str, float, bool, float]] = {
    "BETA": ("beta", 0.0, True, math.inf),
    "LOCK_TIMEOUT": ("lock_timeout", 0.0, False, math.inf),
    "WAIT_TIMEOUT": ("wait_timeout", 0.0, False, math.inf),
    "GRACE": ("grace", 0.0, True, math.inf),
    "CHECK_INTERVAL": ("check_interval", 0.0, False, math.inf),
    "JITTER": ("jitter", 0.0, True, 0.5),
}


def parse_options(options: object) -> tuple[FenceOptions, list[str]]:
    """Read a FencedCache's OPTIONS; return the options and a list of problems.

    Each problem is a full sentence naming the option. Invalid values are left
    at their defaults in the returned options, so callers decide whether a
    problem is fatal (the backend raises, the system check reports).
    """
    values: dict[str, float] = {}
    problems: list[str] = []
    if not isinstance(options, Mapping):
        return FenceOptions(), [f"OPTIONS must be a dict, not {type(options).__name__}."]
    for name, raw in options.items():
        if name not in OPTION_FIELDS:
            known = ", ".join(OPTION_FIELDS)
            problems.append(f"OPTIONS has an unknown key {name!r}; the known keys are {known}.")
            continue
        field, lowest, inclusive, highest = OPTION_FIELDS[name]
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            problems.append(f"OPTIONS[{name!r}] must be a number, not {type(raw).__name__}.")
            continue
        if not math.isfinite(raw) or raw < lowest or (raw == lowest and not inclusive):
            bound = ">=" if inclusive else ">"
            problems.append(f"OPTIONS[{name!r}] must be a finite number {bound} {lowest:g}, got {raw!r}.")
            continue
        if raw > highest:
            problems.append(f"OPTIONS[{name!r}] must be between {lowest:g} and {highest:g}, got {raw!r}.")
            continue
        values[field] = float(raw)
    return FenceOptions(**values), problems
