"""System checks of FencedCache entries: every id, its exact message and hint."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.checks.registry import registry

from django_fence.checks import check_admin_settings, check_fenced_caches, check_poll_caches, check_stream_servers

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
FENCED = "django_fence.backends.FencedCache"
MEMCACHED = {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": "127.0.0.1:11211"}


def fenced(location: str, **options: Any) -> dict[str, Any]:
    return {"BACKEND": FENCED, "LOCATION": location, "OPTIONS": options}


def test_valid_configuration_passes(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("backing", BETA=1.0, GRACE=0)}
    assert check_fenced_caches() == []


def test_checks_are_registered_under_the_caches_tag(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("nowhere"), "votes": MEMCACHED}
    messages = registry.run_checks(tags=["caches"])
    assert [m.id for m in messages if m.id and m.id.startswith("django_fence")] == ["django_fence.E001"]


def test_location_naming_no_alias(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("nowhere")}
    assert check_fenced_caches() == [
        Error("FencedCache 'default' wraps 'nowhere', which is not in CACHES.",
              hint="Set LOCATION to the alias of the cache to wrap, e.g. 'backing'.",
              obj="CACHES['default']", id="django_fence.E001"),
    ]  # fmt: skip


def test_location_naming_itself(settings: Any) -> None:
    settings.CACHES = {"default": fenced("default")}
    assert check_fenced_caches() == [
        Error("FencedCache 'default' wraps itself.",
              hint="Point LOCATION at another alias, one with a real backend.",
              obj="CACHES['default']", id="django_fence.E002"),
    ]  # fmt: skip


def test_location_naming_another_fenced_cache(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "inner": fenced("backing"), "default": fenced("inner")}
    assert check_fenced_caches() == [
        Error("FencedCache 'default' wraps 'inner', which is another FencedCache.",
              hint="Point LOCATION at the alias that 'inner' wraps.",
              obj="CACHES['default']", id="django_fence.E003"),
    ]  # fmt: skip


def test_options_of_the_wrong_type_or_range(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM,
                       "default": fenced("backing", BETA="1", LOCK_TIMEOUT=0, GRACE=-1, WAIT_TIMEOUT=True, JITTER=0.6,
                                         BOGUS=1)}
    hint = "See the OPTIONS table in django-fence's README."
    problems = [
        "OPTIONS['BETA'] must be a number, not str.",
        "OPTIONS['LOCK_TIMEOUT'] must be a finite number > 0, got 0.",
        "OPTIONS['GRACE'] must be a finite number >= 0, got -1.",
        "OPTIONS['WAIT_TIMEOUT'] must be a number, not bool.",
        "OPTIONS['JITTER'] must be between 0 and 0.5, got 0.6.",
        "OPTIONS has an unknown key 'BOGUS'; the known keys are BETA, LOCK_TIMEOUT, WAIT_TIMEOUT, GRACE, "
        "CHECK_INTERVAL, JITTER.",
    ]
    assert check_fenced_caches() == [
        Error(f"FencedCache 'default': {problem}", hint=hint, obj="CACHES['default']", id="django_fence.E004")
        for problem in problems
    ]


def test_options_that_are_not_a_dict(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": {"BACKEND": FENCED, "LOCATION": "backing", "OPTIONS": [1]}}
    assert [m.msg for m in check_fenced_caches()] == ["FencedCache 'default': OPTIONS must be a dict, not list."]


def test_lock_timeout_shorter_than_wait_timeout_warns(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("backing", LOCK_TIMEOUT=2, WAIT_TIMEOUT=5)}
    assert check_fenced_caches() == [
        Warning("FencedCache 'default': LOCK_TIMEOUT (2) is shorter than WAIT_TIMEOUT (5).",
                hint="A lock that expires before the waiters give up lets a second caller recompute; "
                "make LOCK_TIMEOUT at least WAIT_TIMEOUT.",
                obj="CACHES['default']", id="django_fence.W001"),
    ]  # fmt: skip


def test_backend_refuses_invalid_options_when_used(settings: Any) -> None:
    import pytest
    from django.core.cache import caches
    from django.core.exceptions import ImproperlyConfigured

    settings.CACHES = {"backing": LOCMEM, "default": fenced("backing", BETA=-1)}
    with pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['BETA'\] must be a finite number >= 0, got -1"):
        caches["default"]


def test_poll_caches_valid_configuration_passes(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("backing"), "votes": MEMCACHED}
    assert check_poll_caches() == []
    assert [m.id for m in registry.run_checks(tags=["caches"]) if m.id and m.id.startswith("django_fence")] == []


def test_poll_caches_votes_alias_missing(settings: Any) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("backing")}
    assert check_poll_caches() == [
        Error("The poll app's votes cache 'votes' is not in CACHES.",
              hint="Add a CACHES entry of that name (memcached through PyLibMCCache in production, "
              "LocMemCache for development), or point DJANGO_FENCE['POLLS_VOTES_CACHE'] at one.",
              obj="DJANGO_FENCE['POLLS_VOTES_CACHE']", id="django_fence.E010"),
    ]  # fmt: skip
    assert "django_fence.E010" in [m.id for m in registry.run_checks(tags=["caches"])]


def test_poll_caches_fenced_alias_missing(settings: Any) -> None:
    settings.CACHES = {"default": LOCMEM, "counts": MEMCACHED}
    settings.DJANGO_FENCE = {"POLLS_VOTES_CACHE": "counts", "POLLS_FENCED_CACHE": "fence"}
    assert check_poll_caches() == [
        Error("The poll app's fenced cache 'fence' is not in CACHES.",
              hint="Point DJANGO_FENCE['POLLS_FENCED_CACHE'] at a FencedCache alias.",
              obj="DJANGO_FENCE['POLLS_FENCED_CACHE']", id="django_fence.E011"),
    ]  # fmt: skip


def test_poll_caches_fenced_alias_not_fenced(settings: Any) -> None:
    settings.CACHES = {"default": LOCMEM, "votes": MEMCACHED}
    assert check_poll_caches() == [
        Warning("The poll app reads questions and totals through 'default', which is not a FencedCache.",
                hint="Without the fence, a hot question's metadata and totals are recomputed by every request "
                "that misses; point DJANGO_FENCE['POLLS_FENCED_CACHE'] at a FencedCache alias.",
                obj="DJANGO_FENCE['POLLS_FENCED_CACHE']", id="django_fence.W010"),
    ]  # fmt: skip


@pytest.mark.parametrize(("backend", "name"), [("django.core.cache.backends.locmem.LocMemCache", "LocMemCache"),
                                               ("django.core.cache.backends.dummy.DummyCache", "DummyCache")])
def test_poll_caches_votes_alias_per_process_warns(settings: Any, backend: str, name: str) -> None:
    settings.CACHES = {"backing": LOCMEM, "default": fenced("backing"), "votes": {"BACKEND": backend}}
    assert check_poll_caches() == [
        Warning(f"The poll app's votes cache 'votes' is not shared between processes ({name}).",
                hint="flush_vote_queue runs in its own process and can never see the votes queued by the web "
                "server's processes (and LocMemCache culls entries past MAX_ENTRIES): use memcached "
                "(PyLibMCCache) for DJANGO_FENCE['POLLS_VOTES_CACHE'].",
                obj="DJANGO_FENCE['POLLS_VOTES_CACHE']", id="django_fence.W011"),
    ]  # fmt: skip


def test_stream_servers_by_url_or_existing_alias_pass(settings: Any) -> None:
    settings.CACHES = {"default": LOCMEM, "counts": MEMCACHED}
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"main": "redis://127.0.0.1:6379/0", "other": "counts"}}
    assert check_stream_servers() == []


def test_stream_servers_naming_an_unknown_alias(settings: Any) -> None:
    settings.CACHES = {"default": LOCMEM}
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"main": "redis-cache"}}
    assert check_stream_servers() == [
        Error("STREAMS_REDIS['main'] names 'redis-cache', which is neither a URL nor an alias in CACHES.",
              hint="Use a URL such as redis://127.0.0.1:6379/0, or the alias of a Redis cache.",
              obj="DJANGO_FENCE['STREAMS_REDIS']", id="django_fence.E006"),
    ]  # fmt: skip
    assert "django_fence.E006" in [m.id for m in registry.run_checks()]


@pytest.mark.parametrize("servers", [{"a/b": "redis://x"}, {"": "redis://x"}, {"main": 6379}])
def test_stream_servers_with_a_bad_entry(settings: Any, servers: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": servers}
    (label, target), = servers.items()
    assert check_stream_servers() == [
        Error(f"STREAMS_REDIS entry {label!r}: {target!r} must map a label (a non-empty str without '/') "
              "to a Redis URL or a cache alias.", obj="DJANGO_FENCE['STREAMS_REDIS']", id="django_fence.E006"),
    ]  # fmt: skip


def test_stream_servers_not_a_dict(settings: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": ["redis://x"]}
    assert [m.id for m in check_stream_servers()] == ["django_fence.E006"]



@pytest.mark.parametrize(("name", "value", "wanted"), [
    ("ADMIN_REFRESH_INTERVAL", "5", "a number of seconds from 0.1 to 3600"),
    ("ADMIN_REFRESH_INTERVAL", 0, "a number of seconds from 0.1 to 3600"),
    ("ADMIN_REFRESH_INTERVAL", float("nan"), "a number of seconds from 0.1 to 3600"),
    ("ADMIN_REFRESH_MAX_FACTOR", 0, "an int from 1 to 1000"),
    ("ADMIN_REFRESH_MAX_FACTOR", True, "an int from 1 to 1000"),
    ("ADMIN_PAGE_SIZE", 0, "an int from 1 to 10000"),
    ("ADMIN_PAGE_SIZE", 2.5, "an int from 1 to 10000"),
    ("ADMIN_PAGE_SIZE", 10**400, "an int from 1 to 10000"),
])
def test_admin_settings_out_of_range(settings: Any, name: str, value: Any, wanted: str) -> None:
    settings.DJANGO_FENCE = {name: value}
    assert check_admin_settings() == [
        Error(f"DJANGO_FENCE[{name!r}] must be {wanted}, got {value!r}.", obj=f"DJANGO_FENCE[{name!r}]",
              id="django_fence.E007"),
    ]


def test_admin_settings_defaults_pass(settings: Any) -> None:
    settings.DJANGO_FENCE = {}
    assert check_admin_settings() == []



@pytest.mark.parametrize(("target", "message", "hint"), [
    ("http://127.0.0.1:6379", "STREAMS_REDIS['main'] is a URL of scheme 'http'.",
     "Use one of redis://, rediss://, unix://, redis+cluster://, rediss+cluster://."),
    ("redis+cluster://127.0.0.1:7000/1", "STREAMS_REDIS['main'] names database '1' of a Redis Cluster, which has "
     "only database 0.", None),
])
def test_stream_servers_with_a_bad_url(settings: Any, target: str, message: str, hint: str | None) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"main": target}}
    assert check_stream_servers() == [Error(message, hint=hint, obj="DJANGO_FENCE['STREAMS_REDIS']",
                                            id="django_fence.E006")]


def test_stream_servers_cluster_urls_pass(settings: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"a": "redis+cluster://h:7000", "b": "rediss+cluster://h:7000/0",
                                               "c": "unix:///run/redis.sock"}}
    assert check_stream_servers() == []
