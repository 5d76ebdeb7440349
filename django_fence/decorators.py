"""``@fenced_cache_page`` and ``@fenced``: Django's per-view cache and a memoizer, through the fence."""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.http import HttpRequest

from .keys import argument_key
from .pages import PageCache

F = TypeVar("F", bound=Callable[..., Any])


def fenced_cache_page(timeout: float | None, *, cache: str | None = None, key_prefix: str | None = None,
                      grace: float | None = None) -> Callable[[F], F]:
    """Django's ``cache_page``, with the view rendered once per expiry across processes.

    Same arguments, keys and HTTP behaviour as ``django.views.decorators.cache.cache_page``
    (Django's own middleware code decides what is stored, see pages.py); ``cache`` must
    name a FencedCache alias. ``grace`` overrides the alias's GRACE: for that many
    seconds after expiry callers get the previous page at once while one re-renders.
    Works on sync and async views.
    """
    # As Django's cache_page: None means the "default" alias and no prefix, not the CACHE_MIDDLEWARE_* settings.
    page = PageCache(timeout, cache or "default", key_prefix or "", grace)

    def decorator(view: F) -> F:
        if iscoroutinefunction(view):
            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                return await page.aserve(request, lambda r: view(r, *args, **kwargs))

            return async_view  # type: ignore[return-value]

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return page.serve(request, lambda r: view(r, *args, **kwargs))

        return sync_view  # type: ignore[return-value]

    return decorator


class Fenced:
    """A function memoized through a FencedCache alias (what ``@fenced`` returns)."""

    def __init__(self, function: Callable[..., Any], timeout: Any, key: str | Callable[..., str] | None,
                 cache: str | None, grace: float | None) -> None:
        functools.update_wrapper(self, function)
        self.function = function
        self.timeout = timeout
        self.key = key
        self.alias = cache or "default"
        self.grace = grace
        self.signature = inspect.signature(function)
        self.is_async = iscoroutinefunction(function)
        self.name = f"{function.__module__}.{function.__qualname__}"
        if self.is_async:
            from asgiref.sync import markcoroutinefunction

            markcoroutinefunction(self)

    @property
    def cache(self) -> Any:
        from .httpcache import fenced_alias

        return fenced_alias(self.alias, "@fenced")

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        """On a method: the instance is the first argument, and part of the key (as with lru_cache)."""
        return self if instance is None else _Bound(self, instance)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The cache key of one call: stable across processes and restarts."""
        if callable(self.key):
            return str(self.key(*args, **kwargs))
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        digest = hashlib.sha256(argument_key(bound.arguments).encode()).hexdigest()[:32]
        return f"fenced:{self.key or self.name}:{digest}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self.cache_key(*args, **kwargs)
        if self.is_async:
            return self.cache.aget_or_set(key, functools.partial(self.function, *args, **kwargs), self.timeout,
                                          grace=self.grace)
        return self.cache.get_or_set(key, functools.partial(self.function, *args, **kwargs), self.timeout,
                                     grace=self.grace)

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Drop the entry of these arguments: the next call recomputes (once)."""
        return bool(self.cache.delete(self.cache_key(*args, **kwargs)))

    def mark_stale(self, *args: Any, **kwargs: Any) -> bool:
        """Soften the entry of these arguments: the next call refreshes once, the others get the old value."""
        return bool(self.cache.mark_stale(self.cache_key(*args, **kwargs)))

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> bool:
        return bool(await self.cache.adelete(self.cache_key(*args, **kwargs)))

    async def amark_stale(self, *args: Any, **kwargs: Any) -> bool:
        return bool(await self.cache.amark_stale(self.cache_key(*args, **kwargs)))


class _Bound:
    """A ``@fenced`` method bound to its instance."""

    def __init__(self, fenced: Fenced, instance: Any) -> None:
        self.fenced, self.instance = fenced, instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fenced(self.instance, *args, **kwargs)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        return self.fenced.cache_key(self.instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        return self.fenced.invalidate(self.instance, *args, **kwargs)

    def mark_stale(self, *args: Any, **kwargs: Any) -> bool:
        return self.fenced.mark_stale(self.instance, *args, **kwargs)


def fenced(timeout: Any = DEFAULT_TIMEOUT, *, key: str | Callable[..., str] | None = None, cache: str | None = None,
           grace: float | None = None) -> Callable[[Callable[..., Any]], Fenced]:
    """Memoize a function (sync or async) through the fence: one computation per expiry across processes.

    The key is the function's qualified name (or ``key`` if it is a string)
    and a digest of its arguments, bound to its signature so ``f(1)`` and
    ``f(x=1)`` share an entry. Arguments must be values with a stable
    identity (str, bytes, numbers, None, bools, dates, UUIDs, Decimals,
    enums, model instances by their pk, and tuples, lists, sets and dicts of
    those); anything else raises TypeError. ``key`` may also be a callable
    taking the same arguments and returning the key.
    """
    if callable(timeout) and not isinstance(timeout, int | float):
        raise TypeError("@fenced needs a timeout: write @fenced(300), not @fenced.")

    def decorator(function: Callable[..., Any]) -> Fenced:
        return Fenced(function, timeout, key, cache, grace)

    return decorator


__all__ = ["Fenced", "fenced", "fenced_cache_page"]
