"""Site-wide page caching through the fence: Django's cache middleware, one render per expiry.

Two ways, as in Django:

* ``FencedUpdateCacheMiddleware`` FIRST in MIDDLEWARE and
  ``FencedFetchFromCacheMiddleware`` LAST (where Django's
  ``UpdateCacheMiddleware`` and ``FetchFromCacheMiddleware`` go). The fetch
  half runs after the other middleware have seen the request (the language
  set by LocaleMiddleware is in the key); the update half stores the page
  after they have seen the response (``Vary: Cookie`` from the session
  middleware is in the stored page). Between the two, the lock is held and
  the other callers of that page wait for this render.
* ``FencedCacheMiddleware``: both in one class, like Django's
  ``CacheMiddleware``; its key is computed before the middleware below it run.

Settings are Django's: ``CACHE_MIDDLEWARE_ALIAS`` (a FencedCache alias),
``CACHE_MIDDLEWARE_SECONDS``, ``CACHE_MIDDLEWARE_KEY_PREFIX``, plus
``CACHE_MIDDLEWARE_GRACE`` (seconds; the alias's GRACE if unset). Each class
serves sync and async stacks; async never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from .pages import PageCache


def _page() -> PageCache:
    return PageCache(
        timeout=None,
        cache_alias=settings.CACHE_MIDDLEWARE_ALIAS,
        key_prefix=settings.CACHE_MIDDLEWARE_KEY_PREFIX,
        grace=getattr(settings, "CACHE_MIDDLEWARE_GRACE", None),
        cache_timeout=settings.CACHE_MIDDLEWARE_SECONDS,
    )


class _Middleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.page = _page()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        return self.__acall__(request) if self.is_async else self.handle(request)

    def handle(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError


class FencedCacheMiddleware(_Middleware):
    """Django's ``CacheMiddleware`` through the fence: put it first in MIDDLEWARE."""

    def handle(self, request: HttpRequest) -> HttpResponseBase:
        return self.page.serve(request, self.get_response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        return await self.page.aserve(request, self.get_response)


class FencedUpdateCacheMiddleware(_Middleware):
    """The response half: FIRST in MIDDLEWARE. Stores the page and releases the callers waiting for it."""

    def handle(self, request: HttpRequest) -> HttpResponseBase:
        try:
            response = self.get_response(request)
        except BaseException:  # Django turns exceptions into responses; not an interruption
            self.page.failed(request)
            raise
        return self.page.after(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            response = await self.get_response(request)
        except BaseException as exc:  # a client that went away cancels the request (Django 5 under ASGI)
            await self.page.afailed(request, exc)
            raise
        return await self.page.aafter(request, response)


class FencedFetchFromCacheMiddleware(_Middleware):
    """The request half: LAST in MIDDLEWARE. Answers from the cache, or lets one caller render."""

    def handle(self, request: HttpRequest) -> HttpResponseBase:
        response = self.page.before(request)
        if response is not None:
            return response
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.page.abefore(request)
        if response is not None:
            return response
        response = await self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return response
