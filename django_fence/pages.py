"""Whole-page caching through the fence: what ``fenced_cache_page`` and the middleware share.

Parity with Django's ``cache_page`` comes from running Django's own code
(httpcache.py): the keys are Django's (``django.utils.cache``), what is
stored and with which headers is decided by Django's
``UpdateCacheMiddleware.process_response``, and a hit is finished by
Django's ``FetchFromCacheMiddleware.process_request``, so the rules of the
installed Django version apply (4.2 and 5.2 differ on ``no-store``,
``Vary: *``, ``Authorization`` and ``Age``).

What the fence adds: a cold or expired page is rendered once across
processes. A page is handled in two halves, as Django's middleware pair
does: ``before`` (fetch) answers from the cache or starts a run whose lock
this request holds; ``after`` (update) stores the rendered page and hands it
to the callers that waited. The first render of a URL, before its ``Vary``
headers are known, is fenced on the URL (a "cold" key next to Django's
header-list key); the callers that waited then look the page up again under
its real key. A response that must not be stored is not handed to anyone:
a short marker releases the waiters at once and each renders its own
(PITFALLS 17). A render that ends in an exception or a cancellation
releases the waiters the same way; the exception reaches its own caller only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import (  # type: ignore[attr-defined]  # _generate_cache_header_key is private
    _generate_cache_header_key,
    get_cache_key,
    get_max_age,
    has_vary_header,
    patch_cache_control,
)
from django.utils.http import parse_http_date_safe

from .aio import ARun, off_loop
from .conf import fence_settings
from .engine import Run
from .envelope import Step, Timed
from .httpcache import (
    LOOK_AGAIN,
    MARKER_TTL,
    PASS,
    Capture,
    DjangoFetch,
    DjangoUpdate,
    Replay,
    arendered,
    fenced_alias,
    for_django,
    noop,
    rendered,
)
from .invalidation import generation_keys

__all__ = ["LOOK_AGAIN", "PASS", "PageCache"]

logger = logging.getLogger(__name__)

COLD_SUFFIX = ".fence-cold"
#: What the waiters get when the leader's page cannot be shared; a stale page on the server is kept.
RELEASE = Timed(PASS, MARKER_TTL, grace=False, over_stale=False)


class _Pending(NamedTuple):
    """On a request whose render the other callers wait for."""

    run: Run | ARun
    key: str
    started: float
    generations: tuple[int, int]


class _Lookup(NamedTuple):
    key: str  # the key to fence on
    headerlist: Any  # Django's header list (None before the first render)
    page: HttpResponseBase | None  # a stored GET page that answers a HEAD
    generations: tuple[int, int]  # the URL's (soft, hard) generations


def cache_status(response: HttpResponseBase, params: str) -> None:
    """Say what the cache did, in an RFC 9211 ``Cache-Status`` header (DJANGO_FENCE CACHE_STATUS_HEADER)."""
    if fence_settings().CACHE_STATUS_HEADER:
        response["Cache-Status"] = f"django-fence; {params}"


def not_stored_because(response: HttpResponseBase) -> str:
    """Why Django's update step did not store a response, for Cache-Status's ``detail``."""
    if response.streaming:
        return "streaming"
    if response.status_code not in (200, 304):
        return f"status-{response.status_code}"
    cache_control = response.get("Cache-Control", "").lower()
    for directive in ("private", "no-store", "no-cache"):
        if directive in cache_control:
            return directive
    if response.cookies and has_vary_header(response, "Cookie"):
        return "set-cookie"
    if has_vary_header(response, "*"):
        return "vary-star"
    return "max-age-0" if get_max_age(response) == 0 else "not-storable"


def outdated(page: Any, generations: tuple[int, int]) -> Step | None:
    """Whether a stored page predates an invalidation of its URL: MISS (hard), STALE (soft), or None."""
    if not isinstance(page, HttpResponseBase):
        return None  # markers
    soft, hard = getattr(page, "_fence_generations", (0, 0))
    if hard != generations[1]:
        return Step.MISS
    if soft != generations[0]:
        return Step.STALE
    return None


class _Own(NamedTuple):
    """On a request that renders its own page (the leader's could not be shared)."""

    generations: tuple[int, int]


def _notes(request: HttpRequest) -> dict[tuple[str, str], Any]:
    """What each page layer of this request left for its update half, by (alias, key prefix)."""
    notes: dict[tuple[str, str], Any] = request.__dict__.setdefault("_fence_pages", {})
    return notes


class PageCache:
    """Fenced whole-page caching with Django's ``cache_page`` semantics, for one timeout/alias/prefix."""

    def __init__(self, timeout: float | None = None, cache_alias: str | None = None, key_prefix: str | None = None,
                 grace: float | None = None, cache_timeout: float | None = None) -> None:
        self.update = DjangoUpdate(noop)
        self.fetch = DjangoFetch(noop)
        if cache_alias is not None:
            self.update.cache_alias = self.fetch.cache_alias = cache_alias
        if key_prefix is not None:
            self.update.key_prefix = self.fetch.key_prefix = key_prefix
        if cache_timeout is not None:
            self.update.cache_timeout = cache_timeout
        self.update.page_timeout = timeout  # type: ignore[attr-defined]  # Django 4.1+, missing from the stubs
        self.grace = grace
        # Layers with the same alias and prefix compute the same keys: an inner one renders through.
        self.layer = (str(self.fetch.cache_alias), str(self.fetch.key_prefix))

    @property
    def cache(self) -> Any:
        return fenced_alias(self.layer[0], "fenced page caching")

    # -- reads and writes, with Django's code ---------------------------------------------------------
    def lookup(self, request: HttpRequest) -> _Lookup:
        """Where this request's page is and what is known of it, by plain reads (one round trip on a GET).

        Before the first render of a URL there is no header list: the key is
        the URL's cold key, next to Django's header-list key. The URL's
        generations (invalidation.py) come with the header list.
        """
        cache = self.cache
        headerlist_key = _generate_cache_header_key(self.layer[1], request)
        soft_key, hard_key = generation_keys(request.build_absolute_uri(), self.layer[1])
        found = cache.get_many([headerlist_key, soft_key, hard_key])
        headerlist = found.get(headerlist_key)
        generations = (found.get(soft_key, 0), found.get(hard_key, 0))
        if headerlist is None:
            return _Lookup(headerlist_key + COLD_SUFFIX, None, None, generations)
        replay: Any = Replay(headerlist, None)  # get_cache_key reads the header list again: answer from memory
        key = get_cache_key(request, self.layer[1], "GET", cache=replay)
        if request.method == "HEAD":
            # As Django does: a stored GET page answers a HEAD; a HEAD is rendered and stored under its own key.
            page = cache.get(key)
            if isinstance(page, HttpResponseBase) and outdated(page, generations) is None:
                return _Lookup(str(key), headerlist, page, generations)
            key = get_cache_key(request, self.layer[1], "HEAD", cache=replay)
        return _Lookup(str(key), headerlist, None, generations)

    def store(self, request: HttpRequest, response: HttpResponseBase, fenced_key: str, delta: float,
              generations: tuple[int, int]) -> tuple[HttpResponseBase, Any]:
        """Run Django's update step on a rendered response; (the response, what the fence stores).

        The page itself when Django stores it under ``fenced_key``; RELEASE
        when Django would not store it. When Django learns another key (the
        cold render, or a changed Vary), the page is written there now and
        the waiters get LOOK_AGAIN. Header lists are written after the page:
        one without its page would send another process to a key nobody
        holds a lock on, and it would render again.
        """
        cache = self.cache
        request._cache_update_cache = True  # type: ignore[attr-defined]  # what Django's fetch step sets
        capture = Capture(cache, response, self._grace())
        token = for_django.set(capture)
        try:
            updated = self.update.process_response(request, response)
        finally:
            for_django.reset(token)
        assert isinstance(updated, HttpResponseBase)
        updated._fence_generations = generations  # type: ignore[attr-defined]  # read back by outdated()
        if capture.stored is None:
            capture.write_headerlists()
            cache_status(updated, f"fwd=miss; detail={not_stored_because(updated)}")
            return updated, RELEASE
        cache_status(updated, "fwd=miss; stored")
        key, timeout = capture.stored
        if key == fenced_key:
            return updated, Timed(updated, timeout, delta=delta)
        cache.put(key, updated, timeout, delta=delta, grace=self.grace)
        capture.write_headerlists()
        return updated, Timed(LOOK_AGAIN, MARKER_TTL, grace=False)

    def hit(self, request: HttpRequest, headerlist: Any, response: HttpResponseBase,
            collapsed: bool = False) -> HttpResponseBase:
        """Finish a hit as Django does (its ``Age`` header on Django 5); a stale page says it is stale.

        A page served in the grace window carries an ``Age`` and a
        ``max-age`` no longer than the grace left (PITFALLS 18): a proxy or
        CDN in front must not keep it for a full timeout. Fresh pages keep
        exactly Django's headers.
        """
        token = for_django.set(Replay(headerlist, response))
        try:
            result = self.fetch.process_request(request) or response
        finally:
            for_django.reset(token)
        now = time.time()
        expires = parse_http_date_safe(result.get("Expires", ""))
        if expires is not None and now >= expires:
            max_age = get_max_age(result) or 0
            left = max(0, int(expires + self._grace() - now))
            result["Age"] = str(max(0, int(now - (expires - max_age))))
            patch_cache_control(result, max_age=min(left, max_age))
            cache_status(result, f"hit; fwd=stale; ttl={int(expires - now)}")
        elif collapsed:
            cache_status(result, "fwd=miss; collapsed")
        else:
            cache_status(result, "hit" if expires is None else f"hit; ttl={int(expires - now)}")
        return result

    def _grace(self) -> float:
        return float(self.cache.options.grace if self.grace is None else self.grace)

    def settled(self, value: Any, followed: bool, key: str) -> Any:
        """What a run that did not render gives this caller: a page of its own, or a marker.

        A caller that followed this process's flight got the very object the
        flight's leader got; a response is changed by the middleware it goes
        through (headers, closers), so each follower reads its own copy.
        """
        if isinstance(value, HttpResponseBase) and followed:
            try:
                value = self.cache.get(key)
            except Exception:  # the server went away since: this caller renders its own page
                logger.warning("fenced page %s: could not read the page another caller stored", key, exc_info=True)
                return PASS
            return value if isinstance(value, HttpResponseBase) else PASS
        return value

    # -- the two halves ----------------------------------------------------------------------------
    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        """The page from the cache, or None: the request goes on, and ``after`` gets its response.

        None leaves a note on the request: this caller renders for the others
        (its run holds the lock), or renders its own page.
        """
        notes = _notes(request)
        if request.method not in ("GET", "HEAD"):
            return None
        if self.layer in notes:  # an outer layer renders this very page (same keys): render through
            request.__dict__.setdefault("_fence_through", set()).add(id(self))
            return None
        cache = self.cache
        collapsed = False
        for _ in range(2):  # a cold render, then the page under its real key
            key, headerlist, page, generations = self.lookup(request)
            if page is not None:
                return self.hit(request, headerlist, page)
            run = cache.start(key, grace=self.grace, outdated=lambda value, g=generations: outdated(value, g))
            if run.computing:
                notes[self.layer] = _Pending(run, key, time.monotonic(), generations)
                return None
            value = self.settled(run.value, run.followed, key)
            collapsed = collapsed or run.waited
            if value == LOOK_AGAIN:
                continue
            if isinstance(value, HttpResponseBase):
                return self.hit(request, headerlist, value, collapsed)
            break  # PASS: the leader's answer cannot be shared
        notes[self.layer] = _Own(generations)
        return None

    def _through(self, request: HttpRequest) -> bool:
        """Whether this layer rendered through an outer one (and has nothing of its own to finish)."""
        through: set[int] = request.__dict__.get("_fence_through", set())
        if id(self) in through:
            through.discard(id(self))
            return True
        return False

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Store the page if Django would and hand it to the callers waiting for it."""
        if self._through(request):
            return response
        pending = _notes(request).get(self.layer)
        if isinstance(pending, _Pending) and isinstance(pending.run, ARun):  # the fetch half ran async
            return async_to_sync(self.aafter)(request, response)
        pending = _notes(request).pop(self.layer, None)
        if pending is None:
            if request.method not in ("GET", "HEAD"):
                cache_status(response, "fwd=method")
            return response
        try:
            response = rendered(response)
            if isinstance(pending, _Own):
                return self.store(request, response, "", 0.0, pending.generations)[0]
            delta = time.monotonic() - pending.started
            response, value = self.store(request, response, pending.key, delta, pending.generations)
        except BaseException:
            if isinstance(pending, _Pending):
                self._release(pending)
            raise
        pending.run.supply(value)
        return response

    def failed(self, request: HttpRequest) -> None:
        """The view raised or was interrupted: release the callers waiting (they render their own)."""
        if self._through(request):
            return
        pending = _notes(request).get(self.layer)
        if isinstance(pending, _Pending) and isinstance(pending.run, ARun):
            async_to_sync(self.afailed)(request)
            return
        pending = _notes(request).pop(self.layer, None)
        if isinstance(pending, _Pending):
            self._release(pending)

    def _release(self, pending: _Pending) -> None:
        assert isinstance(pending.run, Run)
        try:
            pending.run.supply(RELEASE)
        except Exception:
            logger.warning("fenced page %s: could not release the waiters", pending.key, exc_info=True)
            pending.run.abandon()

    def serve(self, request: HttpRequest, get_response: Callable[[HttpRequest], HttpResponseBase]) -> HttpResponseBase:
        """The response to ``request``: from the cache, or rendered once by ``get_response``."""
        response = self.before(request)
        if response is not None:
            return response
        try:
            response = get_response(request)
        except BaseException:
            self.failed(request)
            raise
        return self.after(request, response)

    # -- the same for async code: every blocking cache call runs off the event loop --------------------
    async def abefore(self, request: HttpRequest) -> HttpResponseBase | None:
        """``before`` for async code."""
        notes = _notes(request)
        if request.method not in ("GET", "HEAD"):
            return None
        if self.layer in notes:
            request.__dict__.setdefault("_fence_through", set()).add(id(self))
            return None
        cache = self.cache
        collapsed = False
        for _ in range(2):
            key, headerlist, page, generations = await off_loop(self.lookup, request)
            if page is not None:
                return self.hit(request, headerlist, page)
            run = await cache.astart(key, grace=self.grace, outdated=lambda value, g=generations: outdated(value, g))
            if run.computing:
                notes[self.layer] = _Pending(run, key, time.monotonic(), generations)
                return None
            value = await off_loop(self.settled, run.value, run.followed, key) if run.followed else run.value
            collapsed = collapsed or run.waited
            if value == LOOK_AGAIN:
                continue
            if isinstance(value, HttpResponseBase):
                return self.hit(request, headerlist, value, collapsed)
            break
        notes[self.layer] = _Own(generations)
        return None

    async def aafter(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """``after`` for async code."""
        if self._through(request):
            return response
        pending = _notes(request).get(self.layer)
        if isinstance(pending, _Pending) and isinstance(pending.run, Run):  # the fetch half ran sync
            after: HttpResponseBase = await sync_to_async(self.after, thread_sensitive=True)(request, response)
            return after
        pending = _notes(request).pop(self.layer, None)
        if pending is None:
            if request.method not in ("GET", "HEAD"):
                cache_status(response, "fwd=method")
            return response
        try:
            response = await arendered(response)
            if isinstance(pending, _Own):
                return (await off_loop(self.store, request, response, "", 0.0, pending.generations))[0]  # type: ignore[no-any-return]
            delta = time.monotonic() - pending.started
            response, value = await off_loop(self.store, request, response, pending.key, delta, pending.generations)
        except BaseException as exc:
            if isinstance(pending, _Pending):
                await self._arelease(pending, exc)
            raise
        await pending.run.supply(value)
        return response

    async def afailed(self, request: HttpRequest, error: BaseException | None = None) -> None:
        """``failed`` for async code."""
        if self._through(request):
            return
        pending = _notes(request).get(self.layer)
        if isinstance(pending, _Pending) and isinstance(pending.run, Run):
            await sync_to_async(self.failed, thread_sensitive=True)(request)
            return
        pending = _notes(request).pop(self.layer, None)
        if isinstance(pending, _Pending):
            await self._arelease(pending, error)

    async def _arelease(self, pending: _Pending, error: BaseException | None) -> None:
        run = pending.run
        assert isinstance(run, ARun)
        if isinstance(error, GeneratorExit):  # this coroutine is being closed: no awaits, release blocking
            run.abandon()
            return
        try:
            await asyncio.shield(run.supply(RELEASE))
        except Exception:
            logger.warning("fenced page %s: could not release the waiters", pending.key, exc_info=True)
            run.abandon()

    async def aserve(self, request: HttpRequest,
                     get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> HttpResponseBase:
        """``serve`` for async views."""
        response = await self.abefore(request)
        if response is not None:
            return response
        try:
            response = await get_response(request)
        except BaseException as exc:
            await self.afailed(request, exc)
            raise
        return await self.aafter(request, response)
