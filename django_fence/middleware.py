"""FencedCacheMiddleware: Django's CacheMiddleware with one render per expiry across processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from .pages import PageCache


class FencedCacheMiddleware:
    """Site-wide page caching through a FencedCache alias.

    The settings are Django's: ``CACHE_MIDDLEWARE_ALIAS`` (a FencedCache
    alias), ``CACHE_MIDDLEWARE_SECONDS`` and ``CACHE_MIDDLEWARE_KEY_PREFIX``,
    plus ``CACHE_MIDDLEWARE_GRACE`` (seconds; the alias's GRACE if unset).

    Like Django's ``CacheMiddleware`` it is one class that wraps what comes
    after it, so put it FIRST in MIDDLEWARE, where ``UpdateCacheMiddleware``
    goes: every other middleware then runs inside the one fenced render and
    its headers (``Vary: Cookie`` from the session middleware) are in the
    stored page. Like Django's ``CacheMiddleware``, the key is computed before
    those middleware run, so the language and time zone in the key are the
    ones active when the request arrives; a site that switches them per
    request in middleware should cache per view with ``fenced_cache_page``.
    Both sync and async stacks are served; async never blocks the loop.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.page = PageCache(
            timeout=None,
            cache_alias=settings.CACHE_MIDDLEWARE_ALIAS,
            key_prefix=settings.CACHE_MIDDLEWARE_KEY_PREFIX,
            grace=getattr(settings, "CACHE_MIDDLEWARE_GRACE", None),
            cache_timeout=settings.CACHE_MIDDLEWARE_SECONDS,
        )
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return self.page.serve(request, self.get_response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        return await self.page.aserve(request, get_response)
