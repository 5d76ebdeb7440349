"""fenced_cache_page and FencedCacheMiddleware: Django's cache_page behaviour, side by side, plus the fence.

The parity tests send the same requests to one view through Django's own
``cache_page`` (on a plain LocMemCache) and through ``fenced_cache_page`` (on
a FencedCache over another LocMemCache), and compare what comes back, how
often each view ran, and which keys each wrote. They port the intent of
Django's tests for ``cache_page`` and the cache middleware (tests/cache/tests.py
in Django: Vary on headers and cookies, HEAD, query strings, non-200,
private/no-store responses, max-age, per key prefix and per alias).
"""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.test import AsyncRequestFactory, RequestFactory
from django.utils.cache import get_cache_key, patch_cache_control, patch_vary_headers
from django.views.decorators.cache import cache_page

from django_fence import fenced_cache_page
from django_fence.envelope import unwrap
from django_fence.middleware import FencedCacheMiddleware
from django_fence.pages import LOOK_AGAIN, PASS
from tests.conftest import backing_config, fenced_caches, flush
from tests.test_stampede import in_threads, store_envelope
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(120)

FENCE = {"BETA": 0.0, "LOCK_TIMEOUT": 10, "WAIT_TIMEOUT": 5, "GRACE": 60}


def locmem(name: str) -> dict[str, Any]:
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"{name}-{uuid.uuid4().hex}"}


def fenced_over(location: str, **options: Any) -> dict[str, Any]:
    return {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": location, "OPTIONS": {**FENCE, **options}}


@pytest.fixture
def side_by_side(settings: Any) -> Iterator[None]:
    """"plain"/"plain_other": LocMem for Django's cache_page; "default"/"other": FencedCaches over LocMem."""
    settings.CACHES = {
        "plain": locmem("plain"), "plain_other": locmem("plain-other"),
        "backing": locmem("backing"), "backing_other": locmem("backing-other"),
        "default": fenced_over("backing"), "other": fenced_over("backing_other"),
    }
    settings.CACHE_MIDDLEWARE_SECONDS = 600
    yield


# -- the views both sides run ------------------------------------------------------------------------
class Counting:
    """A view body that counts its renders; the body names the render, so sides compare equal."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.renders = 0

    def __call__(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse | TemplateResponse:
        self.renders += 1
        body = f"render {self.renders} {request.method} lang={request.headers.get('Accept-Language')}"
        b = self.behaviour
        if b == "template":
            template = engines["django"].from_string("template {{ n }} {{ request.method }}")
            return TemplateResponse(request, template, {"n": self.renders})
        if b == "streaming":
            return StreamingHttpResponse(iter([body]))
        response = HttpResponse(body, status=404 if b == "not_found" else 200)
        if b == "vary_language":
            patch_vary_headers(response, ["Accept-Language"])
        elif b == "vary_cookie":
            patch_vary_headers(response, ["Cookie"])
        elif b == "sets_cookie":
            patch_vary_headers(response, ["Cookie"])
            response.set_cookie("sid", f"s{self.renders}")
        elif b == "private":
            patch_cache_control(response, private=True)
        elif b == "no_store":
            patch_cache_control(response, no_store=True)
        elif b == "max_age":
            patch_cache_control(response, max_age=5)
        elif b == "max_age_zero":
            patch_cache_control(response, max_age=0)
        elif b == "vary_star":
            response["Vary"] = "*"
        return response


BEHAVIOURS = ["plain", "vary_language", "vary_cookie", "sets_cookie", "not_found", "private", "no_store",
              "max_age", "max_age_zero", "template", "streaming", "vary_star"]

# (method, path, headers, cookies)
REQUESTS: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    ("GET", "/p", {}, {}),
    ("GET", "/p", {}, {}),
    ("GET", "/p?a=1", {}, {}),
    ("GET", "/p?a=2", {}, {}),
    ("GET", "/p?a=1", {}, {}),
    ("HEAD", "/p", {}, {}),
    ("HEAD", "/q", {}, {}),
    ("HEAD", "/q", {}, {}),
    ("GET", "/q", {}, {}),
    ("GET", "/p", {"Accept-Language": "fr"}, {}),
    ("GET", "/p", {"Accept-Language": "de"}, {}),
    ("GET", "/p", {"Accept-Language": "fr"}, {}),
    ("GET", "/p", {}, {"c": "1"}),
    ("GET", "/p", {}, {"c": "2"}),
    ("GET", "/p", {}, {"c": "1"}),
    ("POST", "/p", {}, {}),
    ("GET", "/p", {"Authorization": "Bearer x"}, {}),
    ("GET", "/p", {"Authorization": "Bearer x"}, {}),
]


def build(method: str, path: str, headers: dict[str, str], cookies: dict[str, str]) -> HttpRequest:
    factory = RequestFactory(headers=headers) if headers else RequestFactory()
    request = factory.generic(method, path)
    request.COOKIES.update(cookies)
    if cookies:
        request.META["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return request


def normalized(response: Any) -> dict[str, Any]:
    """What a client sees, with Expires as a number (the two sides store a few ms apart)."""
    if hasattr(response, "render") and not response.is_rendered:
        response.render()
    headers = dict(response.headers)
    expires = headers.pop("Expires", None)
    age = headers.pop("Age", None)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return {
        "status": response.status_code,
        "content": content,
        "headers": headers,
        "expires": email.utils.parsedate_to_datetime(expires).timestamp() if expires else None,
        "cookies": sorted((k, v.value) for k, v in response.cookies.items()),
        "age": None if age is None else int(age),
    }


def same(ours: dict[str, Any], django: dict[str, Any]) -> None:
    assert ours["status"] == django["status"]
    assert ours["content"] == django["content"]
    assert ours["headers"] == django["headers"]
    assert ours["cookies"] == django["cookies"]
    assert (ours["expires"] is None) == (django["expires"] is None)
    assert (ours["age"] is None) == (django["age"] is None)  # seconds apart when a second turns between the two
    if ours["age"] is not None:
        assert abs(ours["age"] - django["age"]) <= 1
    if ours["expires"] is not None:
        assert abs(ours["expires"] - django["expires"]) <= 2


def page_keys(alias: str) -> set[str]:
    """The page and header-list keys an alias holds (the fence's own keys and markers left out)."""
    cache = caches[alias]
    with cache._lock:  # type: ignore[attr-defined]  # a flush from another thread may be writing
        keys = {k for k in cache._cache if "views.decorators.cache" in k and "fence" not in k}  # type: ignore[attr-defined]
    # A short-lived marker where a page could not be stored (it released that page's waiters) is not a page.
    return {k for k in keys if unwrap(cache.get(k.split(":", 2)[2])) not in (PASS, LOOK_AGAIN)}


def run_both(behaviour: str, requests: list[tuple[str, str, dict[str, str], dict[str, str]]],
             django_wrap: Callable[[Any], Any], ours_wrap: Callable[[Any], Any]) -> tuple[Counting, Counting]:
    theirs, ours = Counting(behaviour), Counting(behaviour)
    django_view, our_view = django_wrap(theirs), ours_wrap(ours)
    for number, spec in enumerate(requests):
        expected = normalized(django_view(build(*spec)))
        got = normalized(our_view(build(*spec)))
        try:
            same(got, expected)
        except AssertionError:
            raise AssertionError(f"request {number} {spec}: ours {got} != Django's {expected}") from None
        assert ours.renders == theirs.renders, f"after request {number} {spec}"
    return theirs, ours


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_same_responses_renders_and_keys_as_cache_page(side_by_side: None, behaviour: str) -> None:
    theirs, _ours = run_both(behaviour, REQUESTS, cache_page(600, cache="plain"), fenced_cache_page(600))
    assert theirs.renders > 0
    # Django's own keys, so code that finds pages with get_cache_key/learn_cache_key finds ours.
    plain = {k.replace(":1:", "", 1) for k in page_keys("plain")}
    fenced = {k.replace(":1:", "", 1) for k in page_keys("backing")}
    assert fenced == plain


def test_key_prefixes_and_aliases_keep_pages_apart(side_by_side: None) -> None:
    requests = [("GET", "/p", {}, {})] * 2
    for prefix in ("one", "two"):
        run_both("plain", requests, cache_page(600, cache="plain", key_prefix=prefix),
                 fenced_cache_page(600, key_prefix=prefix))
    theirs, ours = run_both("plain", requests, cache_page(600, cache="plain_other"),
                            fenced_cache_page(600, cache="other"))
    assert ours.renders == theirs.renders == 1
    assert page_keys("backing_other") and len(page_keys("backing")) == 4


def test_existing_invalidation_code_finds_our_pages(side_by_side: None) -> None:
    view = fenced_cache_page(600)(Counting("plain"))
    view(build("GET", "/p", {}, {}))
    request = build("GET", "/p", {}, {})
    key = get_cache_key(request, cache=caches["default"])
    assert key is not None and caches["default"].get(key) is not None
    caches["default"].delete(key)
    view(request)
    assert view.__wrapped__.renders == 2  # type: ignore[attr-defined]


def test_a_cache_that_is_not_fenced_is_refused_with_its_name(side_by_side: None) -> None:
    view = fenced_cache_page(60, cache="plain")(Counting("plain"))
    with pytest.raises(ImproperlyConfigured, match=r"CACHES\['plain'\] is a LocMemCache"):
        view(build("GET", "/p", {}, {}))


# -- the middleware, side by side with Django's CacheMiddleware --------------------------------------
def test_middleware_behaves_like_django_cache_middleware(side_by_side: None, settings: Any) -> None:
    from django.middleware.cache import CacheMiddleware

    for behaviour in ("plain", "vary_cookie", "sets_cookie", "private", "template"):
        theirs, ours = Counting(behaviour), Counting(behaviour)
        settings.CACHE_MIDDLEWARE_ALIAS = "plain"
        django_mw = CacheMiddleware(theirs)
        settings.CACHE_MIDDLEWARE_ALIAS = "default"
        our_mw = FencedCacheMiddleware(lambda r, v=ours: _rendered(v(r)))  # type: ignore[misc]
        for spec in REQUESTS:
            expected = normalized(_django_middleware_call(django_mw, build(*spec)))
            same(normalized(our_mw(build(*spec))), expected)
            assert ours.renders == theirs.renders, (behaviour, spec)


def _rendered(response: Any) -> Any:
    if hasattr(response, "render") and not response.is_rendered:
        response.render()
    return response


def _django_middleware_call(middleware: Any, request: HttpRequest) -> Any:
    """Django's CacheMiddleware as the handler runs it: a TemplateResponse is rendered before process_response."""
    response = middleware.process_request(request)
    if response is None:
        response = _rendered(middleware.get_response(request))
        response = middleware.process_response(request, response)
    return response


# -- the fence: one render -------------------------------------------------------------------------
SERVER_BACKINGS = ["redis", "pylibmc"]


@pytest.fixture
def page_caches(fenced_on: dict[str, Any]) -> dict[str, Any]:
    return fenced_on


def test_a_cold_page_renders_once_for_concurrent_requests(page_caches: dict[str, Any]) -> None:
    renders: list[int] = []

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        time.sleep(0.3)
        return HttpResponse(uuid.uuid4().hex)

    results, errors, _ = in_threads(20, lambda: view(RequestFactory().get("/storm")))
    assert not errors
    assert len(renders) == 1
    assert len({r.content for r in results}) == 1
    assert all(r["Cache-Control"] == "max-age=60" for r in results)
    # Every caller got its own response object: a shared one would carry one caller's changes to the next.
    assert len({id(r) for r in results}) == 20


@pytest.mark.parametrize("kind", SERVER_BACKINGS)
def test_a_cold_page_renders_once_across_processes(kind: str, request: pytest.FixtureRequest) -> None:
    location = request.getfixturevalue("redis_url" if kind == "redis" else "memcached_location")
    flush(kind, location)
    config = fenced_caches(backing_config(kind, location), BETA=0.0)
    results = run_in_processes(4, "storm_page", config, path="/pages/slow/", threads=8)
    bodies = [body for r in results for body in r["bodies"]]
    assert [e for r in results for e in r["errors"]] == []
    assert len(bodies) == 32 and all(s == 200 for r in results for s in r["statuses"])
    assert len(set(bodies)) == 1, "the page was rendered more than once"
    flush(kind, location)


def test_stale_page_is_served_at_once_while_one_caller_re_renders(page_caches: dict[str, Any]) -> None:
    release = threading.Event()
    renders: list[int] = []

    @fenced_cache_page(1, grace=60)
    def view(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        if len(renders) > 1:
            assert release.wait(10)  # the re-render is held until every other caller has its answer
        return HttpResponse(f"render {len(renders)}")

    assert view(RequestFactory().get("/stale")).content == b"render 1"
    key = get_cache_key(RequestFactory().get("/stale"), cache=caches["default"])
    page = caches["default"].get(key)
    store_envelope(caches["default"], key, page, soft_in=-1, delta=0.05)  # past its soft expiry, inside the grace
    outcome: dict[str, Any] = {}

    def rerender() -> None:
        outcome["leader"] = view(RequestFactory().get("/stale"))

    leader = threading.Thread(target=rerender)
    leader.start()
    deadline = time.monotonic() + 5
    while len(renders) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    results, errors, _ = in_threads(10, lambda: view(RequestFactory().get("/stale")))
    release.set()
    leader.join(10)
    assert not errors and len(renders) == 2
    assert {r.content for r in results} == {b"render 1"}
    assert outcome["leader"].content == b"render 2"
    assert view(RequestFactory().get("/stale")).content == b"render 2"


def test_waiters_are_released_at_once_and_render_their_own_uncacheable_answer(page_caches: dict[str, Any]) -> None:
    """PITFALLS 17: the leader's answer sets a cookie; nobody queues behind it or receives it."""
    count = 12
    lock = threading.Lock()
    renders: list[str] = []
    others = threading.Barrier(count - 1, timeout=10)

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        with lock:
            renders.append(sid := uuid.uuid4().hex)
            first = len(renders) == 1
        if first:
            time.sleep(0.3)
        else:
            others.wait()  # all the others render at the same time: a queue behind the leader would break this
        response = HttpResponse(sid)
        patch_vary_headers(response, ["Cookie"])
        response.set_cookie("sid", sid)
        return response

    results, errors, _ = in_threads(count, lambda: view(RequestFactory().get("/cookie")))
    assert not errors, errors
    assert len(renders) == count
    for response in results:  # each got the cookie of its own render, never the leader's
        assert response.cookies["sid"].value == response.content.decode()
    assert len({r.content for r in results}) == count


def test_a_head_request_where_a_get_could_not_be_stored_renders_its_own(page_caches: dict[str, Any]) -> None:
    calls: list[str] = []

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(request.method)
        response = HttpResponse("x", status=200 if len(calls) == 1 else 404)
        patch_vary_headers(response, ["Accept-Language"])
        return response

    view(RequestFactory().get("/h"))  # stored: the header list is learnt
    caches["default"].delete(get_cache_key(RequestFactory().get("/h"), cache=caches["default"]))
    assert view(RequestFactory().get("/h")).status_code == 404  # not storable: a marker stands in its place
    assert view(RequestFactory().head("/h")).status_code == 404
    assert calls == ["GET", "GET", "HEAD"]


def test_a_template_response_is_rendered_once_and_stored(page_caches: dict[str, Any]) -> None:
    renders: list[int] = []
    template = engines["django"].from_string("hello {{ who }}")

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> TemplateResponse:
        renders.append(1)
        return TemplateResponse(request, template, {"who": "world"})

    first = view(RequestFactory().get("/tpl"))
    second = view(RequestFactory().get("/tpl"))
    assert first.content == second.content == b"hello world"
    assert len(renders) == 1


def test_a_view_that_raises_leaves_no_lock_behind(page_caches: dict[str, Any]) -> None:
    calls: list[int] = []

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("boom")
        return HttpResponse("fine")

    with pytest.raises(ValueError, match="boom"):
        view(RequestFactory().get("/raises"))
    started = time.monotonic()
    assert view(RequestFactory().get("/raises")).content == b"fine"
    assert time.monotonic() - started < 2  # not WAIT_TIMEOUT (5 s) behind a lock nobody holds


def test_async_view_renders_once_without_blocking_the_loop(page_caches: dict[str, Any]) -> None:
    renders: list[int] = []

    @fenced_cache_page(60)
    async def view(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        await asyncio.sleep(0.3)
        return HttpResponse(uuid.uuid4().hex)

    async def storm() -> tuple[list[Any], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        responses = await asyncio.gather(*(view(AsyncRequestFactory().get("/async")) for _ in range(20)))
        done.set()
        await ticking
        return list(responses), ticks

    responses, ticks = asyncio.run(storm())
    assert len(renders) == 1
    assert len({r.content for r in responses}) == 1
    assert ticks >= 10  # the loop kept running during the 300 ms render


def test_async_view_across_processes(redis_url: str) -> None:
    flush("redis", redis_url)
    config = fenced_caches(backing_config("redis", redis_url), BETA=0.0)
    results = run_in_processes(3, "storm_page", config, path="/pages/async-slow/", threads=6)
    bodies = {body for r in results for body in r["bodies"]}
    assert [e for r in results for e in r["errors"]] == []
    assert len(bodies) == 1
    flush("redis", redis_url)


def test_post_is_never_fenced_nor_cached(page_caches: dict[str, Any]) -> None:
    calls: list[int] = []

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(1)
        return HttpResponse("posted")

    results, errors, _ = in_threads(5, lambda: view(RequestFactory().post("/form")))
    assert not errors and len(calls) == 5
    assert all("Expires" not in r for r in results)


def test_middleware_renders_once_for_concurrent_requests(page_caches: dict[str, Any], settings: Any) -> None:
    settings.CACHE_MIDDLEWARE_ALIAS = "default"
    settings.CACHE_MIDDLEWARE_SECONDS = 60
    renders: list[int] = []

    def inner(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        time.sleep(0.3)
        return HttpResponse(uuid.uuid4().hex)

    middleware = FencedCacheMiddleware(inner)
    results, errors, _ = in_threads(15, lambda: middleware(RequestFactory().get("/site")))
    assert not errors and len(renders) == 1
    assert len({r.content for r in results}) == 1


class RecordingLocMemCache(LocMemCache):
    """LocMemCache that records the keys it writes, in order."""

    writes: list[str] = []

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        RecordingLocMemCache.writes.append(str(key))
        super().set(key, value, timeout, version)


def test_a_cold_render_stores_the_page_before_its_header_list(settings: Any) -> None:
    """A header list without its page would send another process to a page key nobody holds a lock on."""
    settings.CACHES = {"backing": {"BACKEND": "tests.test_pages.RecordingLocMemCache", "LOCATION": uuid.uuid4().hex},
                       "default": fenced_over("backing")}
    RecordingLocMemCache.writes.clear()
    fenced_cache_page(60)(Counting("plain"))(build("GET", "/cold", {}, {}))
    writes = [w for w in RecordingLocMemCache.writes if "views.decorators.cache" in w and "fence" not in w]
    assert [w.split(".")[3] for w in writes] == ["cache_page", "cache_header"]


def test_waiters_of_one_process_each_get_their_own_page_object(settings: Any) -> None:
    """Followers of one in-process flight that READ a page rendered elsewhere must not share the object:
    the handler changes it (closers, headers) while the others would be copying or changing it too."""
    settings.CACHES = {"backing": locmem("backing"), "default": fenced_over("backing"),
                       # "another process": its own flights (aliases are told apart by their config)
                       "other": fenced_over("backing", CHECK_INTERVAL=0.004)}
    started = threading.Event()

    def render(request: HttpRequest) -> HttpResponse:
        started.set()
        time.sleep(0.3)
        return HttpResponse("page")

    here = fenced_cache_page(60, grace=0)(render)
    elsewhere = fenced_cache_page(60, cache="other", grace=0)(render)
    here(build("GET", "/shared", {}, {}))
    caches["default"].mark_stale(get_cache_key(build("GET", "/shared", {}, {}), cache=caches["default"]))
    started.clear()
    renderer = threading.Thread(target=lambda: elsewhere(build("GET", "/shared", {}, {})))
    renderer.start()
    assert started.wait(5)

    def get() -> HttpResponse:
        response = here(build("GET", "/shared", {}, {}))
        response._resource_closers.append(lambda: None)  # as the handler does; a lambda cannot be pickled
        response["X-Mine"] = str(threading.get_ident())
        time.sleep(0.05)
        return response

    results, errors, _ = in_threads(20, get)
    renderer.join(10)
    assert not errors, errors
    assert len({id(r) for r in results}) == 20
    assert all(r["X-Mine"] != "" and r.content == b"page" for r in results)


# -- failures, nesting and modes (each must leave no lock behind) -----------------------------------------
@pytest.fixture
def one_cache(settings: Any) -> Iterator[None]:
    settings.CACHES = {"backing": locmem("backing"), "default": fenced_over("backing")}
    settings.CACHE_MIDDLEWARE_ALIAS = "default"
    settings.CACHE_MIDDLEWARE_SECONDS = 60
    yield


def locks_left() -> list[str]:
    backing = caches["backing"]
    with backing._lock:  # type: ignore[attr-defined]
        return [k for k in backing._cache if "fence-lock" in k]  # type: ignore[attr-defined]


def quick(view: Callable[[HttpRequest], Any], path: str) -> Any:
    """The view's response, asserting it did not wait behind a lock (WAIT_TIMEOUT is 5 s)."""
    started = time.monotonic()
    response = view(build("GET", path, {}, {}))
    assert time.monotonic() - started < 2, "waited behind a lock nobody holds"
    return response


def test_a_template_that_fails_to_render_leaves_no_lock(one_cache: None) -> None:
    broken = engines["django"].from_string("{% for x in boom %}{{ x }}{% endfor %}")
    calls: list[int] = []

    class Boom:
        def __iter__(self) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("render failed")
            return iter(["ok"])

    view = fenced_cache_page(60)(lambda request: TemplateResponse(request, broken, {"boom": Boom()}))
    with pytest.raises(RuntimeError, match="render failed"):
        view(build("GET", "/tpl-fails", {}, {}))
    assert locks_left() == []
    assert quick(view, "/tpl-fails").content == b"ok"


def test_a_cancelled_async_render_leaves_no_lock(one_cache: None) -> None:
    started = asyncio.Event()

    @fenced_cache_page(60)
    async def view(request: HttpRequest) -> HttpResponse:
        started.set()
        await asyncio.sleep(10)
        return HttpResponse("never")

    @fenced_cache_page(60)
    async def fast(request: HttpRequest) -> HttpResponse:
        return HttpResponse("fast")

    async def cancel_mid_render() -> None:
        task = asyncio.create_task(view(AsyncRequestFactory().get("/cancelled")))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_render())
    assert locks_left() == []
    started_at = time.monotonic()
    assert asyncio.run(fast(AsyncRequestFactory().get("/cancelled"))).content == b"fast"
    assert time.monotonic() - started_at < 2


def test_waiters_in_the_process_do_not_get_the_leaders_exception(one_cache: None) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:
            time.sleep(0.3)
            raise ValueError("the leader's own problem")
        return HttpResponse("mine")

    results, errors, _ = in_threads(6, lambda: view(build("GET", "/raises-once", {}, {})))
    assert [str(e) for e in errors] == ["the leader's own problem"]
    assert [r.content for r in results] == [b"mine"] * 5
    assert locks_left() == []


def test_an_uncacheable_refresh_keeps_the_stale_page(one_cache: None) -> None:
    calls: list[int] = []

    @fenced_cache_page(1, grace=60)
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(1)
        return HttpResponse(f"render {len(calls)}", status=200 if len(calls) == 1 else 503)

    assert view(build("GET", "/flaky", {}, {})).content == b"render 1"
    key = get_cache_key(build("GET", "/flaky", {}, {}), cache=caches["default"])
    entry = caches["backing"].get(key)  # the page, stored again with its soft expiry passed
    store_envelope(caches["default"], key, entry.value, soft_in=-1, delta=0.1)
    assert view(build("GET", "/flaky", {}, {})).status_code == 503  # the refresher gets its own answer
    assert view(build("GET", "/flaky", {}, {})).content.startswith(b"render")
    assert caches["default"].get(key).content == b"render 1"  # the stale page is still there


def test_the_first_render_records_its_time_and_counts_once(one_cache: None) -> None:
    @fenced_cache_page(60)
    def view(request: HttpRequest) -> HttpResponse:
        time.sleep(0.2)
        return HttpResponse("x")

    caches["default"].reset_stats()
    view(build("GET", "/timed", {}, {}))
    key = get_cache_key(build("GET", "/timed", {}, {}), cache=caches["default"])
    assert caches["backing"].get(key).delta >= 0.2  # XFetch can refresh it early from its first cycle
    assert caches["default"].stats()["recomputes"] == 1


@pytest.mark.parametrize("prefix", ["", "inner"])
def test_a_fenced_view_inside_the_fenced_middleware(one_cache: None, prefix: str) -> None:
    """Per-site and per-view caching together, as Django allows: neither layer waits on the other."""
    renders: list[int] = []

    @fenced_cache_page(60, key_prefix=prefix)
    def view(request: HttpRequest) -> HttpResponse:
        renders.append(1)
        return HttpResponse("nested")

    site = FencedCacheMiddleware(view)
    assert quick(site, "/nested").content == b"nested"
    assert locks_left() == []
    assert quick(site, "/nested").content == b"nested" and len(renders) == 1


def test_cache_page_arguments_mean_what_they_mean_to_django(side_by_side: None, settings: Any) -> None:
    """None is the "default" alias and no prefix, whatever CACHE_MIDDLEWARE_ALIAS/KEY_PREFIX say."""
    settings.CACHE_MIDDLEWARE_KEY_PREFIX = "site"
    settings.CACHE_MIDDLEWARE_ALIAS = "other"
    run_both("plain", [("GET", "/p", {}, {})] * 2, cache_page(600, cache="plain"), fenced_cache_page(600))
    assert {k.replace(":1:", "", 1) for k in page_keys("backing")} == \
        {k.replace(":1:", "", 1) for k in page_keys("plain")}
    assert page_keys("backing_other") == set()


def test_fenced_on_a_method(one_cache: None) -> None:
    from django_fence import fenced

    calls: list[str] = []

    class Prices:
        @fenced(60, key=lambda self, item: f"price:{item}")
        def of(self, item: str) -> str:
            calls.append(item)
            return f"{item}: 3"

        @fenced(60)
        def unkeyed(self, item: str) -> str:
            return item

    prices = Prices()
    assert prices.of("tea") == Prices().of("tea") == "tea: 3"  # the instance is passed, the key ignores it
    assert calls == ["tea"]
    assert prices.of.invalidate("tea") is True
    with pytest.raises(TypeError, match="type Prices"):  # by default the instance is part of the key
        prices.unkeyed("tea")
