"""invalidate_page and invalidate_fragment: every variant at once, in O(1) round trips, on every server."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.utils.cache import patch_vary_headers

from django_fence import fenced_cache_page, invalidate_fragment, invalidate_page
from tests.conftest import backing_config, fenced_caches, flush
from tests.test_stampede import in_threads
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(120)

URL = "http://testserver/news/"


@pytest.fixture
def pages(fenced_on: dict[str, Any]) -> None:
    """Pages over every kind of server (LocMem keeps 10,000 entries: one test stores 200 variants)."""


class Variants:
    """A view that varies on X-Variant and counts its renders per variant."""

    def __init__(self, pause: threading.Event | None = None) -> None:
        self.renders: list[str] = []
        self.lock = threading.Lock()
        self.pause = pause

    def __call__(self, request: HttpRequest) -> HttpResponse:
        variant = request.headers.get("X-Variant", "-")
        with self.lock:
            self.renders.append(variant)
            number = len(self.renders)
        if self.pause is not None and number > 1:
            assert self.pause.wait(10)
        response = HttpResponse(f"{variant} render {number}")
        patch_vary_headers(response, ["X-Variant"])
        return response


def get(view: Any, variant: str = "-", method: str = "GET") -> HttpResponse:
    factory = RequestFactory(headers={"X-Variant": variant})
    response: HttpResponse = view(factory.generic(method, "/news/"))
    return response


def test_one_call_invalidates_fifty_variants_hard(pages: None) -> None:
    body = Variants()
    view = fenced_cache_page(600)(body)
    variants = [f"v{i}" for i in range(50)]
    for variant in variants:
        get(view, variant)
        get(view, variant, "HEAD")
    assert len(body.renders) == 50  # a stored GET page answers HEAD
    invalidate_page(URL, soft=False)
    after = [get(view, variant).content for variant in variants]
    assert len(body.renders) == 100
    assert all(b"render" in content and int(content.split()[-1]) > 50 for content in after)
    assert [get(view, variant).content for variant in variants] == after  # stored again, fresh


def test_one_call_invalidates_fifty_variants_softly(pages: None) -> None:
    body = Variants()
    view = fenced_cache_page(600)(body)
    variants = [f"v{i}" for i in range(50)]
    first = [get(view, variant).content for variant in variants]
    invalidate_page(RequestFactory().get("/news/"))  # a request names the URL as well
    second = [get(view, variant).content for variant in variants]  # each variant: its one refresher
    assert len(body.renders) == 100 and second != first
    assert [get(view, variant).content for variant in variants] == second


def test_a_soft_invalidation_during_a_storm_re_renders_once(pages: None) -> None:
    release = threading.Event()
    body = Variants(pause=release)
    view = fenced_cache_page(600)(body)
    assert get(view).content == b"- render 1"
    invalidate_page(URL)
    leader = threading.Thread(target=lambda: get(view))
    leader.start()
    deadline = time.monotonic() + 5
    while len(body.renders) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    results, errors, _ = in_threads(10, lambda: get(view))  # the refresh is held: these must not wait
    release.set()
    leader.join(10)
    assert not errors and len(body.renders) == 2
    assert {r.content for r in results} == {b"- render 1"}
    assert get(view).content == b"- render 2"


def test_an_invalidation_during_a_render_is_not_lost(pages: None) -> None:
    """The render in flight stores a page that is already outdated: it is never served as fresh."""
    rendering, release = threading.Event(), threading.Event()
    renders: list[int] = []

    @fenced_cache_page(600)
    def view(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        if len(renders) == 1:
            rendering.set()
            assert release.wait(10)
        return HttpResponse(f"render {len(renders)}")

    first = threading.Thread(target=lambda: view(RequestFactory().get("/news/")))
    first.start()
    assert rendering.wait(5)
    invalidate_page(URL, soft=False)  # the content changed while the page was being rendered
    release.set()
    first.join(10)
    assert view(RequestFactory().get("/news/")).content == b"render 2"
    assert view(RequestFactory().get("/news/")).content == b"render 2"


def test_invalidation_costs_the_same_however_many_variants(settings: Any) -> None:
    settings.CACHES = {"backing": {"BACKEND": "tests.test_invalidation.CountingLocMemCache",
                                   "LOCATION": uuid.uuid4().hex, "OPTIONS": {"MAX_ENTRIES": 10_000}},
                       "default": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "backing"}}
    view = fenced_cache_page(600)(Variants())
    CountingLocMemCache.calls = 0
    invalidate_page(URL, soft=False)  # the first one creates the counter: incr misses, add
    assert CountingLocMemCache.calls == 2
    costs = []
    for count in (1, 200):
        for variant in range(count):
            get(view, f"{count}-{variant}")
        CountingLocMemCache.calls = 0
        invalidate_page(URL, soft=False)
        costs.append(CountingLocMemCache.calls)
    assert costs == [1, 1]  # one atomic incr, for 1 variant as for 200


class CountingLocMemCache(LocMemCache):
    """LocMemCache counting the operations it is asked for."""

    calls = 0

    def __getattribute__(self, name: str) -> Any:
        if name in ("get", "set", "add", "incr", "delete", "get_many", "set_many", "delete_many", "touch"):
            CountingLocMemCache.calls += 1
        return super().__getattribute__(name)


@pytest.mark.parametrize("kind", ["redis", "pylibmc"])
def test_an_invalidation_reaches_every_process(kind: str, request: pytest.FixtureRequest, settings: Any) -> None:
    location = request.getfixturevalue("redis_url" if kind == "redis" else "memcached_location")
    flush(kind, location)
    settings.CACHES = config = fenced_caches(backing_config(kind, location), BETA=0.0)
    before = Client().get("/pages/slow/").content
    invalidate_page("http://testserver/pages/slow/", soft=False)
    results = run_in_processes(3, "storm_page", config, path="/pages/slow/", threads=5)
    bodies = {body for r in results for body in r["bodies"]}
    assert [e for r in results for e in r["errors"]] == []
    assert len(bodies) == 1 and before.decode() not in bodies  # rendered again, once, across processes
    flush(kind, location)


@pytest.mark.parametrize("url", ["/news/", "news/", "//testserver/news/", "ftp://testserver/news/"])
def test_a_url_without_scheme_and_host_is_refused_and_nothing_is_written(pages: None, url: str) -> None:
    with pytest.raises(ValueError, match="needs an absolute URL"):
        invalidate_page(url)
    assert [k for k in _backing_keys() if "page-generation" in k] == []


def test_something_that_is_not_a_url_is_refused(pages: None) -> None:
    with pytest.raises(TypeError, match="takes a URL or a request, not int"):
        invalidate_page(42)  # type: ignore[arg-type]


def _backing_keys() -> list[str]:
    backing = caches["backing"]
    if not isinstance(backing, LocMemCache):
        return []
    with backing._lock:  # type: ignore[attr-defined]
        return list(backing._cache)  # type: ignore[attr-defined]


def test_invalidate_fragment_soft_and_hard(pages: None) -> None:
    template = Template("{% load fence %}{% fencedcache 600 box who %}{{ n }}{% endfencedcache %}")
    assert template.render(Context({"n": 1, "who": "ann"})) == "1"
    assert template.render(Context({"n": 2, "who": "ann"})) == "1"
    invalidate_fragment("box", "ann", soft=False)
    assert template.render(Context({"n": 3, "who": "ann"})) == "3"
    invalidate_fragment("box", "ann")  # soft: the next render refreshes it
    assert template.render(Context({"n": 4, "who": "ann"})) == "4"
    assert template.render(Context({"n": 5, "who": "ann"})) == "4"


def test_the_command_invalidates_each_url(pages: None) -> None:
    from io import StringIO

    from django.core.management import call_command

    body = Variants()
    view = fenced_cache_page(600)(body)
    get(view, "a")
    out = StringIO()
    call_command("fence_invalidate", URL, "http://testserver/other/", "--hard", stdout=out)
    assert out.getvalue().splitlines() == [f"{URL}: every cached variant is now gone",
                                           "http://testserver/other/: every cached variant is now gone"]
    get(view, "a")
    assert len(body.renders) == 2


def test_the_command_refuses_a_relative_url_with_exit_code_2_and_writes_nothing(pages: None) -> None:
    import subprocess
    import sys

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="needs an absolute URL") as raised:
        call_command("fence_invalidate", URL, "/relative/")
    assert raised.value.returncode == 2
    assert [k for k in _backing_keys() if "page-generation" in k] == []
    finished = subprocess.run([sys.executable, "-m", "django", "fence_invalidate", "/relative/",
                               "--settings", "tests.settings"], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and "needs an absolute URL" in finished.stderr
