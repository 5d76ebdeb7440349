"""Cache-Status (RFC 9211) on every page response, and honest headers on stale pages (PITFALLS 18)."""

from __future__ import annotations

import inspect
import threading
import time
import types
from typing import Any

import pytest
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.middleware.cache import UpdateCacheMiddleware
from django.test import RequestFactory
from django.utils.cache import get_cache_key, get_max_age, patch_cache_control, patch_vary_headers

from django_fence import fenced_cache_page
from django_fence import pages as pages_module
from tests.test_stampede import in_threads, store_envelope

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def status_on(fenced_on: dict[str, Any], settings: Any) -> None:
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2, "CACHE_STATUS_HEADER": True}


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("page")


def test_a_miss_that_stores_then_a_hit(status_on: None) -> None:
    view = fenced_cache_page(60)(plain)
    assert view(RequestFactory().get("/s"))["Cache-Status"] == "django-fence; fwd=miss; stored"
    status = view(RequestFactory().get("/s"))["Cache-Status"]
    assert status in ("django-fence; hit; ttl=60", "django-fence; hit; ttl=59")


def test_callers_that_waited_for_the_render_say_collapsed(status_on: None) -> None:
    @fenced_cache_page(60)
    def slow(request: HttpRequest) -> HttpResponse:
        time.sleep(0.3)
        return HttpResponse("page")

    results, errors, _ = in_threads(8, lambda: slow(RequestFactory().get("/c")))
    assert not errors
    assert sorted(r["Cache-Status"] for r in results) == \
        ["django-fence; fwd=miss; collapsed"] * 7 + ["django-fence; fwd=miss; stored"]


# Django 4.2 stores a no-store response; 5.x does not (the rules are Django's own: see pages.py).
STORES_NO_STORE = "no-store" not in inspect.getsource(UpdateCacheMiddleware.process_response)


@pytest.mark.parametrize(("shape", "detail"), [
    (lambda r: patch_cache_control(r, private=True), "private"),
    pytest.param(lambda r: patch_cache_control(r, no_store=True), "no-store",
                 marks=pytest.mark.skipif(STORES_NO_STORE, reason="this Django stores no-store responses")),
    (lambda r: (patch_vary_headers(r, ["Cookie"]), r.set_cookie("sid", "1")), "set-cookie"),
    (lambda r: setattr(r, "status_code", 404), "status-404"),
])
def test_a_response_that_is_not_stored_says_why(status_on: None, shape: Any, detail: str) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse("x")
        shape(response)
        return response

    response = fenced_cache_page(60)(view)(RequestFactory().get("/n"))
    assert response["Cache-Status"] == f"django-fence; fwd=miss; detail={detail}"


def test_other_methods_say_fwd_method(status_on: None) -> None:
    assert fenced_cache_page(60)(plain)(RequestFactory().post("/m"))["Cache-Status"] == "django-fence; fwd=method"


def test_no_header_unless_asked_for(status_on: None, settings: Any) -> None:
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2}
    view = fenced_cache_page(60)(plain)
    assert "Cache-Status" not in view(RequestFactory().get("/off"))
    assert "Cache-Status" not in view(RequestFactory().get("/off"))


def test_a_stale_page_tells_a_proxy_how_old_it_is_and_how_long_to_keep_it(status_on: None,
                                                                       monkeypatch: Any) -> None:
    """PITFALLS 18: Age, and a max-age no longer than the grace left, so a CDN does not keep it a full timeout."""
    release = threading.Event()
    renders: list[int] = []

    @fenced_cache_page(10, grace=5)
    def view(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        if len(renders) > 1:
            assert release.wait(10)
        return HttpResponse(f"render {len(renders)}")

    fresh = view(RequestFactory().get("/old"))
    assert get_max_age(fresh) == 10
    key = get_cache_key(RequestFactory().get("/old"), cache=caches["default"])
    store_envelope(caches["default"], key, caches["default"].get(key), soft_in=-2, delta=0.05)
    later = time.time() + 12  # 2 s past the page's Expires, 3 s of grace left
    monkeypatch.setattr(pages_module, "time", types.SimpleNamespace(time=lambda: later, monotonic=time.monotonic))
    refresher = threading.Thread(target=lambda: view(RequestFactory().get("/old")))
    refresher.start()
    deadline = time.monotonic() + 5
    while len(renders) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stale = view(RequestFactory().get("/old"))
    release.set()
    refresher.join(10)
    assert stale.content == b"render 1"
    assert stale["Cache-Status"] in ("django-fence; hit; fwd=stale; ttl=-2", "django-fence; hit; fwd=stale; ttl=-1")
    assert int(stale["Age"]) in (11, 12)
    assert get_max_age(stale) in (2, 3)


def test_the_middleware_pair_says_the_same(status_on: None, settings: Any) -> None:
    from django.test import Client

    settings.MIDDLEWARE = ["django_fence.middleware.FencedUpdateCacheMiddleware",
                           "django_fence.middleware.FencedFetchFromCacheMiddleware"]
    settings.CACHE_MIDDLEWARE_ALIAS = "default"
    settings.CACHE_MIDDLEWARE_SECONDS = 60
    client = Client()
    assert client.get("/site/plain/")["Cache-Status"] == "django-fence; fwd=miss; stored"
    assert client.get("/site/plain/")["Cache-Status"].startswith("django-fence; hit; ttl=")
    assert client.post("/site/plain/")["Cache-Status"] == "django-fence; fwd=method"
