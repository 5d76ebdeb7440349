"""Whole-page caching through the fence: what ``fenced_cache_page`` and the middleware share.

Parity with Django's ``cache_page`` comes from running Django's own code:

* the keys are Django's (``get_cache_key`` / ``learn_cache_key`` in
  ``django.utils.cache``), so existing invalidation code finds our pages;
* whether a response may be stored, with what timeout and headers, is decided
  by Django's ``UpdateCacheMiddleware.process_response`` itself, handed a
  cache that captures the page instead of writing it (so the rules of the
  installed Django version apply: 4.2 and 5.2 differ on ``no-store``,
  ``Vary: *`` and ``Authorization``);
* a hit is finished by Django's ``FetchFromCacheMiddleware.process_request``,
  handed a cache that replays what the fence read (the ``Age`` header of
  Django 5.x, nothing on 4.2).

What the fence adds: a cold or expired page is rendered once across
processes. The first render of a URL, before its ``Vary`` headers are known,
is fenced on the URL (a "cold" key next to Django's header-list key); the
callers that waited then look the page up again under its real key. A
response that must not be stored is not handed to the waiters: a short
marker releases them at once and each renders its own (PITFALLS 17).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from django.middleware.cache import FetchFromCacheMiddleware, UpdateCacheMiddleware
from django.utils.cache import _generate_cache_header_key, get_cache_key  # type: ignore[attr-defined]

from .aio import off_loop
from .envelope import Timed

#: Stored instead of a page that must not be cached: every caller waiting on it renders its own.
PASS = "django-fence:pass"
#: Stored under the cold key once the first render stored the page: waiters look it up again.
LOOK_AGAIN = "django-fence:look-again"
#: Seconds a marker lives. Waiters read it right after the lock is released; memcached counts whole seconds.
MARKER_TTL = 2
COLD_SUFFIX = ".fence-cold"
HEADER_KEY_PREFIX = "views.decorators.cache.cache_header."

logger = logging.getLogger(__name__)
_cache_for_django: contextvars.ContextVar[Any] = contextvars.ContextVar("fence_page_cache")


def _noop(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only the middleware's hooks are called, never the middleware itself")


def fenced_alias(alias: str, what: str) -> Any:
    """``caches[alias]``, which must be a FencedCache (an ImproperlyConfigured error says so)."""
    from .backends import FencedCache

    cache = caches[alias]
    if not isinstance(cache, FencedCache):
        raise ImproperlyConfigured(
            f"{what} needs a FencedCache alias; CACHES[{alias!r}] is a {type(cache).__name__}. "
            "Add a FencedCache entry whose LOCATION is that alias, and use it.")
    return cache


class _Capture:
    """The cache Django's UpdateCacheMiddleware writes to: it keeps the page and the header list.

    Both are written later, in an order Django's middleware cannot know: the
    page first (through the fence), then the header list. A header list that
    appeared before its page would send a request from another process to a
    page key nobody holds a lock on yet, and it would render the page again.
    """

    def __init__(self, cache: BaseCache, response: HttpResponseBase, grace: float) -> None:
        self.cache, self.response, self.grace = cache, response, grace
        self.stored: tuple[str, float] | None = None
        self.headerlists: list[tuple[str, Any, Any, int | None]] = []

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        if value is self.response:
            self.stored = (key, timeout)
            return
        # The header list (learn_cache_key) must outlive the page's soft expiry by the grace window:
        # without it the stale page cannot be found and every caller would queue on a cold render.
        if isinstance(timeout, int | float) and timeout > 0:
            timeout = timeout + self.grace
        self.headerlists.append((key, value, timeout, version))

    def write_headerlists(self) -> None:
        """Write the header lists Django learnt (once; later calls write nothing)."""
        headerlists, self.headerlists = self.headerlists, []
        for key, value, timeout, version in headerlists:
            self.cache.set(key, value, timeout, version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)


class _Replay:
    """The cache Django's FetchFromCacheMiddleware reads on a hit: what the fence already read."""

    def __init__(self, headerlist: Any, response: HttpResponseBase | None) -> None:
        self.headerlist, self.response = headerlist, response

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return self.headerlist if key.startswith(HEADER_KEY_PREFIX) else self.response


class _Update(UpdateCacheMiddleware):
    @property
    def cache(self) -> Any:
        return _cache_for_django.get()


class _Fetch(FetchFromCacheMiddleware):
    @property
    def cache(self) -> Any:
        return _cache_for_django.get()


class PageCache:
    """Fenced whole-page caching with Django's ``cache_page`` semantics, for one timeout/alias/prefix."""

    def __init__(self, timeout: float | None = None, cache_alias: str | None = None, key_prefix: str | None = None,
                 grace: float | None = None, cache_timeout: float | None = None) -> None:
        self.update = _Update(_noop)
        self.fetch = _Fetch(_noop)
        if cache_alias is not None:
            self.update.cache_alias = self.fetch.cache_alias = cache_alias
        if key_prefix is not None:
            self.update.key_prefix = self.fetch.key_prefix = key_prefix
        if cache_timeout is not None:
            self.update.cache_timeout = cache_timeout
        self.update.page_timeout = timeout  # type: ignore[attr-defined]  # Django 4.1+, missing from the stubs
        self.grace = grace

    # -- the pieces ------------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        return str(self.fetch.cache_alias)

    @property
    def key_prefix(self) -> str:
        return str(self.fetch.key_prefix)

    @property
    def cache(self) -> Any:
        return fenced_alias(self.alias, "fenced page caching")

    def _grace(self, cache: Any) -> float:
        return float(cache.options.grace if self.grace is None else self.grace)

    def lookup(self, request: HttpRequest) -> tuple[str, Any, Any]:
        """(the key to fence on, the header list, a stored GET page that answers a HEAD), by plain reads.

        Before the first render of a URL there is no header list: the key is
        the URL's cold key, next to Django's header-list key.
        """
        cache = self.cache
        headerlist_key = _generate_cache_header_key(self.key_prefix, request)
        headerlist = cache.get(headerlist_key)
        if headerlist is None:
            return headerlist_key + COLD_SUFFIX, None, None
        replay: Any = _Replay(headerlist, None)  # get_cache_key reads the header list again: answer from memory
        key = get_cache_key(request, self.key_prefix, "GET", cache=replay)
        if request.method == "HEAD":
            # As Django does: a stored GET page answers a HEAD; a HEAD is rendered and stored under its own key.
            page = cache.get(key)
            if isinstance(page, HttpResponseBase):  # not a marker left where a page could not be stored
                return str(key), headerlist, page
            key = get_cache_key(request, self.key_prefix, "HEAD", cache=replay)
        return str(key), headerlist, None

    def store(self, request: HttpRequest, response: HttpResponseBase,
              fenced_key: str) -> tuple[HttpResponseBase, Any, _Capture]:
        """Run Django's update step on a rendered response; (the response, what the fence stores, the capture).

        The stored value is the page itself when Django would store it under
        ``fenced_key``; a marker otherwise (PASS: not storable; LOOK_AGAIN:
        stored under another key, which the caller stores through the fence).
        """
        cache = self.cache
        request._cache_update_cache = True  # type: ignore[attr-defined]
        capture = _Capture(cache, response, self._grace(cache))
        token = _cache_for_django.set(capture)
        try:
            updated = self.update.process_response(request, response)
        finally:
            _cache_for_django.reset(token)
        assert isinstance(updated, HttpResponseBase)
        response = updated
        if capture.stored is None:
            return response, Timed(PASS, MARKER_TTL, grace=False), capture
        key, timeout = capture.stored
        if key == fenced_key:
            return response, Timed(response, timeout), capture
        return response, (key, Timed(response, timeout)), capture

    def hit(self, request: HttpRequest, headerlist: Any, response: HttpResponseBase) -> HttpResponseBase:
        """Finish a hit as Django does (its ``Age`` header on Django 5)."""
        token = _cache_for_django.set(_Replay(headerlist, response))
        try:
            result = self.fetch.process_request(request)
        finally:
            _cache_for_django.reset(token)
        return result or response

    def settled(self, run: Any, key: str) -> Any:
        """What a run that did not render gives this caller: a page of its own, or a marker.

        A caller that followed this process's flight got the very object the
        flight's leader got; a response is changed by the middleware it goes
        through (headers, closers), so each follower reads its own copy.
        """
        value = run.value
        if isinstance(value, HttpResponseBase) and run.followed:
            try:
                value = self.cache.get(key)
            except Exception:  # the server went away since: this caller renders its own page
                logger.warning("fenced page %s: could not read the page another caller stored", key, exc_info=True)
                return PASS
            return value if isinstance(value, HttpResponseBase) else PASS
        return value

    # -- the two halves: before the view (fetch) and after it (update) ---------------------------------
    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        """The page from the cache, or None: the request goes on, and ``after`` gets its response.

        None leaves a note on the request: this caller renders for the others
        (a run waits for its page), or renders its own (the leader's page
        could not be shared).
        """
        if request.method not in ("GET", "HEAD"):
            return None
        cache = self.cache
        for _ in range(2):  # a cold render, then the page under its real key
            key, headerlist, page = self.lookup(request)
            if page is not None:
                return self.hit(request, headerlist, page)
            run = cache.start(key, grace=self.grace)
            if run.computing:
                request._fence_page = _Pending(run, key, headerlist)  # type: ignore[attr-defined]
                return None
            value = self.settled(run, key)
            if value == LOOK_AGAIN:
                continue
            if isinstance(value, HttpResponseBase):
                return self.hit(request, headerlist, value)
            break  # PASS: the leader's answer cannot be shared
        request._fence_page = _OWN  # type: ignore[attr-defined]
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Store the page if Django would, hand it to the callers waiting for it, return the caller's copy."""
        pending = request.__dict__.pop("_fence_page", None)
        if pending is None:
            return response
        response = _rendered(response)
        if pending is _OWN:
            response, value, capture = self.store(request, response, "")
            self._store_elsewhere(value)
            capture.write_headerlists()
            return response
        try:
            response, value, capture = self.store(request, response, pending.key)
            if type(value) is tuple:  # the cold render: the page, its header list, then the waiters
                value = self._store_elsewhere(value)
                capture.write_headerlists()
        except BaseException as exc:
            pending.run.fail(exc)
            raise
        pending.run.supply(value)
        capture.write_headerlists()  # a warm render: the page is stored; a changed Vary is learnt
        return response

    def failed(self, request: HttpRequest, error: Exception) -> HttpResponseBase | None:
        """The view raised: the callers waiting are released; a stale page is returned if there is one."""
        pending = request.__dict__.pop("_fence_page", None)
        if not isinstance(pending, _Pending):
            return None
        stale = pending.run.fail(error)  # re-raises ``error`` unless a stale page can be served
        return self.hit(request, pending.headerlist, stale) if isinstance(stale, HttpResponseBase) else None

    def _store_elsewhere(self, value: Any) -> Any:
        """A page learnt under another key than the one fenced (the cold render): store it there, fenced."""
        if type(value) is not tuple:
            return value
        key, page = value
        self.cache.get_or_set(key, lambda: page, grace=self.grace)
        return Timed(LOOK_AGAIN, MARKER_TTL, grace=False)

    def serve(self, request: HttpRequest, get_response: Callable[[HttpRequest], HttpResponseBase]) -> HttpResponseBase:
        """The response to ``request``: from the cache, or rendered once by ``get_response``."""
        response = self.before(request)
        if response is not None:
            return response
        try:
            response = get_response(request)
        except Exception as exc:
            stale = self.failed(request, exc)
            if stale is None:
                raise
            return stale
        return self.after(request, response)

    # -- the same for async code: every blocking cache call runs off the event loop --------------------
    async def abefore(self, request: HttpRequest) -> HttpResponseBase | None:
        if request.method not in ("GET", "HEAD"):
            return None
        cache = self.cache
        for _ in range(2):
            key, headerlist, page = await off_loop(self.lookup, request)
            if page is not None:
                return self.hit(request, headerlist, page)
            run = await cache.astart(key, grace=self.grace)
            if run.computing:
                request._fence_page = _Pending(run, key, headerlist)  # type: ignore[attr-defined]
                return None
            value = await off_loop(self.settled, run, key) if run.followed else run.value
            if value == LOOK_AGAIN:
                continue
            if isinstance(value, HttpResponseBase):
                return self.hit(request, headerlist, value)
            break
        request._fence_page = _OWN  # type: ignore[attr-defined]
        return None

    async def aafter(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        pending = request.__dict__.pop("_fence_page", None)
        if pending is None:
            return response
        response = await _arendered(response)
        if pending is _OWN:
            response, value, capture = await off_loop(self.store, request, response, "")
            await self._astore_elsewhere(value)
            await off_loop(capture.write_headerlists)
            return response
        try:
            response, value, capture = await off_loop(self.store, request, response, pending.key)
            if type(value) is tuple:
                value = await self._astore_elsewhere(value)
                await off_loop(capture.write_headerlists)
        except BaseException as exc:
            await pending.run.fail(exc)
            raise
        await pending.run.supply(value)
        await off_loop(capture.write_headerlists)
        return response

    async def afailed(self, request: HttpRequest, error: Exception) -> HttpResponseBase | None:
        pending = request.__dict__.pop("_fence_page", None)
        if not isinstance(pending, _Pending):
            return None
        stale = await pending.run.fail(error)
        return self.hit(request, pending.headerlist, stale) if isinstance(stale, HttpResponseBase) else None

    async def _astore_elsewhere(self, value: Any) -> Any:
        if type(value) is not tuple:
            return value
        key, page = value
        await self.cache.aget_or_set(key, lambda: page, grace=self.grace)
        return Timed(LOOK_AGAIN, MARKER_TTL, grace=False)

    async def aserve(self, request: HttpRequest,
                     get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> HttpResponseBase:
        """``serve`` for async views."""
        response = await self.abefore(request)
        if response is not None:
            return response
        try:
            response = await get_response(request)
        except Exception as exc:
            stale = await self.afailed(request, exc)
            if stale is None:
                raise
            return stale
        return await self.aafter(request, response)


class _Pending(NamedTuple):
    """On a request whose render the other callers wait for: the run to supply, the key it fences."""

    run: Any
    key: str
    headerlist: Any


_OWN = "own"  # on a request that renders its own page (the leader's could not be shared)


def _rendered(response: HttpResponseBase) -> HttpResponseBase:
    """A TemplateResponse rendered (Django renders it before storing, through a post-render callback)."""
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        result = render()
        return result if isinstance(result, HttpResponseBase) else response
    return response


async def _arendered(response: HttpResponseBase) -> HttpResponseBase:
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        result = await sync_to_async(render)()
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, HttpResponseBase) else response
    return response
