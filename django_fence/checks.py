"""System checks for FencedCache entries in CACHES (``manage.py check``).

Ids: E001 LOCATION names no alias, E002 LOCATION names the alias itself,
E003 LOCATION names another FencedCache, E004 invalid OPTIONS,
W001 LOCK_TIMEOUT shorter than WAIT_TIMEOUT, E005 the middleware halves not
a pair in order; for the poll app (ids from 010 up): E010 the votes alias is
not in CACHES, E011 the fenced alias is not in CACHES, W010 the fenced alias is
not a FencedCache, W011 the votes alias is per process (LocMem) or stores nothing (Dummy); for the
admin: E006 a bad STREAMS_REDIS entry, E007 an ADMIN_* setting out of range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning

from .conf import configured_caches, fence_settings, parse_options

FENCED_BACKEND = "django_fence.backends.FencedCache"


def check_fenced_caches(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check every FencedCache alias: what it wraps and its OPTIONS."""
    messages: list[CheckMessage] = []
    for alias, config in configured_caches().items():
        if config.get("BACKEND") != FENCED_BACKEND:
            continue
        obj = f"CACHES[{alias!r}]"
        target = config.get("LOCATION")
        if not isinstance(target, str) or target not in configured_caches():
            messages.append(Error(
                f"FencedCache {alias!r} wraps {target!r}, which is not in CACHES.",
                hint="Set LOCATION to the alias of the cache to wrap, e.g. 'backing'.",
                obj=obj, id="django_fence.E001"))  # fmt: skip
        elif target == alias:
            messages.append(Error(
                f"FencedCache {alias!r} wraps itself.",
                hint="Point LOCATION at another alias, one with a real backend.",
                obj=obj, id="django_fence.E002"))  # fmt: skip
        elif configured_caches()[target].get("BACKEND") == FENCED_BACKEND:
            messages.append(Error(
                f"FencedCache {alias!r} wraps {target!r}, which is another FencedCache.",
                hint=f"Point LOCATION at the alias that {target!r} wraps.",
                obj=obj, id="django_fence.E003"))  # fmt: skip
        options, problems = parse_options(config.get("OPTIONS", {}))
        for problem in problems:
            messages.append(Error(
                f"FencedCache {alias!r}: {problem}",
                hint="See the OPTIONS table in django-fence's README.",
                obj=obj, id="django_fence.E004"))  # fmt: skip
        if not problems and options.lock_timeout < options.wait_timeout:
            messages.append(CheckWarning(
                f"FencedCache {alias!r}: LOCK_TIMEOUT ({options.lock_timeout:g}) is shorter than "
                f"WAIT_TIMEOUT ({options.wait_timeout:g}).",
                hint="A lock that expires before the waiters give up lets a second caller recompute; "
                "make LOCK_TIMEOUT at least WAIT_TIMEOUT.",
                obj=obj, id="django_fence.W001"))  # fmt: skip
    return messages


UPDATE = "django_fence.middleware.FencedUpdateCacheMiddleware"
FETCH = "django_fence.middleware.FencedFetchFromCacheMiddleware"


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The fetch half holds a lock that only the update half, before it in MIDDLEWARE, releases."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    has_update, has_fetch = UPDATE in middleware, FETCH in middleware
    if has_update == has_fetch and (not has_fetch or middleware.index(UPDATE) < middleware.index(FETCH)):
        return []
    return [Error(
        "FencedUpdateCacheMiddleware and FencedFetchFromCacheMiddleware must both be in MIDDLEWARE, "
        "the update half before the fetch half.",
        hint="Put FencedUpdateCacheMiddleware first and FencedFetchFromCacheMiddleware last in MIDDLEWARE, "
        "or use FencedCacheMiddleware alone.",
        obj="settings.MIDDLEWARE", id="django_fence.E005")]  # fmt: skip


PER_PROCESS_BACKENDS = frozenset({"django.core.cache.backends.locmem.LocMemCache",
                                  "django.core.cache.backends.dummy.DummyCache"})


def check_poll_caches(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The poll app's aliases (DJANGO_FENCE POLLS_VOTES_CACHE / POLLS_FENCED_CACHE) exist, the second fenced."""
    messages: list[CheckMessage] = []
    conf = fence_settings()
    caches = configured_caches()
    if conf.POLLS_VOTES_CACHE not in caches:
        messages.append(Error(
            f"The poll app's votes cache {conf.POLLS_VOTES_CACHE!r} is not in CACHES.",
            hint="Add a CACHES entry of that name (memcached through PyLibMCCache in production, "
            "LocMemCache for development), or point DJANGO_FENCE['POLLS_VOTES_CACHE'] at one.",
            obj="DJANGO_FENCE['POLLS_VOTES_CACHE']", id="django_fence.E010"))  # fmt: skip
    elif caches[conf.POLLS_VOTES_CACHE].get("BACKEND") in PER_PROCESS_BACKENDS:
        messages.append(CheckWarning(
            f"The poll app's votes cache {conf.POLLS_VOTES_CACHE!r} is not shared between processes "
            f"({caches[conf.POLLS_VOTES_CACHE]['BACKEND'].rsplit('.', 1)[-1]}).",
            hint="flush_vote_queue runs in its own process and can never see the votes queued by the web "
            "server's processes (and LocMemCache culls entries past MAX_ENTRIES): use memcached "
            "(PyLibMCCache) for DJANGO_FENCE['POLLS_VOTES_CACHE'].",
            obj="DJANGO_FENCE['POLLS_VOTES_CACHE']", id="django_fence.W011"))  # fmt: skip
    fenced = conf.POLLS_FENCED_CACHE
    if fenced not in caches:
        messages.append(Error(
            f"The poll app's fenced cache {fenced!r} is not in CACHES.",
            hint="Point DJANGO_FENCE['POLLS_FENCED_CACHE'] at a FencedCache alias.",
            obj="DJANGO_FENCE['POLLS_FENCED_CACHE']", id="django_fence.E011"))  # fmt: skip
    elif caches[fenced].get("BACKEND") != FENCED_BACKEND:
        messages.append(CheckWarning(
            f"The poll app reads questions and totals through {fenced!r}, which is not a FencedCache.",
            hint="Without the fence, a hot question's metadata and totals are recomputed by every request "
            "that misses; point DJANGO_FENCE['POLLS_FENCED_CACHE'] at a FencedCache alias.",
            obj="DJANGO_FENCE['POLLS_FENCED_CACHE']", id="django_fence.W010"))  # fmt: skip
    return messages


def check_stream_servers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """DJANGO_FENCE["STREAMS_REDIS"] maps labels to Redis URLs or to CACHES aliases that exist."""
    from .dashboard import CLUSTER_SCHEMES, URL_SCHEMES

    servers: object = fence_settings().STREAMS_REDIS
    obj = "DJANGO_FENCE['STREAMS_REDIS']"
    if not isinstance(servers, Mapping):
        return [Error(f"STREAMS_REDIS must be a dict of label -> Redis URL or cache alias, not "
                      f"{type(servers).__name__}.", hint='For example {"main": "redis://127.0.0.1:6379/0"}.',
                      obj=obj, id="django_fence.E006")]
    messages: list[CheckMessage] = []
    caches = configured_caches()
    for label, target in servers.items():
        if not isinstance(label, str) or not label or "/" in label or not isinstance(target, str) or not target:
            messages.append(Error(
                f"STREAMS_REDIS entry {label!r}: {target!r} must map a label (a non-empty str without '/') "
                "to a Redis URL or a cache alias.", obj=obj, id="django_fence.E006"))  # fmt: skip
        elif "://" in target and (scheme := urlsplit(target).scheme) not in URL_SCHEMES:
            messages.append(Error(
                f"STREAMS_REDIS[{label!r}] is a URL of scheme {scheme!r}.",
                hint=f"Use one of {', '.join(scheme + '://' for scheme in URL_SCHEMES)}.",
                obj=obj, id="django_fence.E006"))  # fmt: skip
        elif "://" in target and scheme in CLUSTER_SCHEMES and urlsplit(target).path.strip("/") not in ("", "0"):
            messages.append(Error(
                f"STREAMS_REDIS[{label!r}] names database {urlsplit(target).path.strip('/')!r} of a Redis "
                "Cluster, which has only database 0.", obj=obj, id="django_fence.E006"))  # fmt: skip
        elif "://" not in target and target not in caches:
            messages.append(Error(
                f"STREAMS_REDIS[{label!r}] names {target!r}, which is neither a URL nor an alias in CACHES.",
                hint="Use a URL such as redis://127.0.0.1:6379/0, or the alias of a Redis cache.",
                obj=obj, id="django_fence.E006"))  # fmt: skip
    return messages


def check_admin_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The dashboard's refresh interval, back-off factor and page size are numbers in range."""
    conf = fence_settings()
    rules = [
        ("ADMIN_REFRESH_INTERVAL", conf.ADMIN_REFRESH_INTERVAL, (int, float), 0.1, 3600,
         "a number of seconds from 0.1 to 3600"),
        ("ADMIN_REFRESH_MAX_FACTOR", conf.ADMIN_REFRESH_MAX_FACTOR, (int,), 1, 1000, "an int from 1 to 1000"),
        ("ADMIN_PAGE_SIZE", conf.ADMIN_PAGE_SIZE, (int,), 1, 10_000, "an int from 1 to 10000"),
    ]
    messages: list[CheckMessage] = []
    for name, value, types, lowest, highest, wanted in rules:
        try:
            fine = isinstance(value, types) and not isinstance(value, bool) and math.isfinite(value)
        except OverflowError:  # an int beyond a float
            fine = False
        if not fine or not lowest <= value <= highest:
            messages.append(Error(f"DJANGO_FENCE[{name!r}] must be {wanted}, got {value!r}.",
                                  obj=f"DJANGO_FENCE[{name!r}]", id="django_fence.E007"))
    return messages
