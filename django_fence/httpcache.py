"""Django's cache middleware code, driven by the fence (pages.py decides when).

``fenced_cache_page`` keeps Django's keys and rules by running Django's own
``UpdateCacheMiddleware.process_response`` and
``FetchFromCacheMiddleware.process_request``, each handed a stand-in cache:
one that captures what Django would write, one that replays what the fence
read. The markers the fence stores in place of a page live here too.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from django.middleware.cache import FetchFromCacheMiddleware, UpdateCacheMiddleware

#: Stored instead of a page that must not be cached: every caller waiting on it renders its own.
PASS = "django-fence:pass"
#: Stored under the cold key once the first render stored the page: waiters look it up again.
LOOK_AGAIN = "django-fence:look-again"
#: Seconds a marker lives. Waiters read it right after the lock is released; memcached counts whole seconds.
MARKER_TTL = 2
HEADER_KEY_PREFIX = "views.decorators.cache.cache_header."

#: The stand-in cache Django's middleware code sees during one call (see DjangoUpdate/DjangoFetch).
for_django: contextvars.ContextVar[Any] = contextvars.ContextVar("fence_page_cache")


def noop(request: HttpRequest) -> HttpResponseBase:
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


class Capture:
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


class Replay:
    """The cache Django's FetchFromCacheMiddleware reads on a hit: what the fence already read."""

    def __init__(self, headerlist: Any, response: HttpResponseBase | None) -> None:
        self.headerlist, self.response = headerlist, response

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return self.headerlist if key.startswith(HEADER_KEY_PREFIX) else self.response


class DjangoUpdate(UpdateCacheMiddleware):
    """Django's update step, writing to the stand-in cache of the call."""

    @property
    def cache(self) -> Any:
        return for_django.get()


class DjangoFetch(FetchFromCacheMiddleware):
    """Django's fetch step, reading from the stand-in cache of the call."""

    @property
    def cache(self) -> Any:
        return for_django.get()


def rendered(response: HttpResponseBase) -> HttpResponseBase:
    """A TemplateResponse rendered (Django renders it before storing, through a post-render callback)."""
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        result = render()
        return result if isinstance(result, HttpResponseBase) else response
    return response


async def arendered(response: HttpResponseBase) -> HttpResponseBase:
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        result = await sync_to_async(render)()
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, HttpResponseBase) else response
    return response
