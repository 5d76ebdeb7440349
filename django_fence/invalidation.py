"""Invalidate a cached page by its URL, or a cached fragment by its name, in O(1) round trips.

A page is cached once per variant (every Vary value, GET and HEAD, every
language), under keys that hash those values: they cannot be listed without
a scan. Instead each URL has two generation counters next to its pages: the
page layer reads them with the header list (one round trip, as Django's
header-list read), records them in every page it stores, and treats a page
whose recorded generations differ as stale (the soft counter) or gone (the
hard counter). Invalidating is one atomic increment, however many variants
exist; a render that was in flight when the counter moved stores a page that
is already outdated, so it is never served as fresh. Generations are
compared for equality: a counter the server evicted costs one re-render,
never a missed invalidation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.cache.utils import make_template_fragment_key
from django.http import HttpRequest
from django.utils.encoding import iri_to_uri

from .httpcache import fenced_alias

__all__ = ["generation_keys", "invalidate_fragment", "invalidate_page"]


def generation_keys(url: str, key_prefix: str) -> tuple[str, str]:
    """The (soft, hard) generation keys of an absolute URL's pages under ``key_prefix``."""
    digest = hashlib.md5(iri_to_uri(url).encode("ascii"), usedforsecurity=False).hexdigest()
    base = f"django-fence.page-generation.{key_prefix}.{digest}"
    return f"{base}.soft", f"{base}.hard"


def absolute_url(url_or_request: str | HttpRequest) -> str:
    """The absolute URL a request for these pages has (as Django's cache keys see it)."""
    if isinstance(url_or_request, HttpRequest):
        return url_or_request.build_absolute_uri()
    if not isinstance(url_or_request, str):
        raise TypeError(f"invalidate_page takes a URL or a request, not {type(url_or_request).__name__}")
    if not url_or_request.startswith(("http://", "https://")):
        raise ValueError(
            f"invalidate_page needs an absolute URL (scheme and host, as requests see it), got {url_or_request!r}; "
            "pass a request, or the URL with request.build_absolute_uri(path)")
    return url_or_request


def _bump(cache: Any, key: str) -> None:
    """Add one to a counter (created at 1): incr is atomic on every server; add only if it is missing."""
    try:
        cache.incr(key)
    except ValueError:
        if not cache.add(key, 1, None):  # another caller created it first
            cache.incr(key)


def invalidate_page(url_or_request: str | HttpRequest, *, soft: bool = True, cache: str | None = None,
                    key_prefix: str | None = None) -> None:
    """Every cached variant of one URL becomes stale (``soft``) or gone, in O(1) round trips.

    soft=True: the next request re-renders once while the others get the
    old page within the grace window. soft=False: the next request renders
    and the others wait for it. ``cache`` and ``key_prefix`` are those of the
    ``fenced_cache_page`` (or middleware) that cached the page. A relative
    URL without a request raises ValueError, and nothing is written.
    """
    url = absolute_url(url_or_request)
    fenced = fenced_alias(cache or "default", "invalidate_page")
    soft_key, hard_key = generation_keys(url, key_prefix or "")
    _bump(fenced, soft_key if soft else hard_key)


def invalidate_fragment(fragment_name: str, *vary_on: Any, soft: bool = True, using: str | None = None) -> None:
    """One ``{% fencedcache %}`` fragment becomes stale (``soft``) or gone: one key, as Django's tag names it."""
    from django.core.cache import InvalidCacheBackendError, caches

    if using is None:
        try:
            caches["template_fragments"]
            using = "template_fragments"
        except InvalidCacheBackendError:
            using = "default"
    fenced = fenced_alias(using, "invalidate_fragment")
    key = make_template_fragment_key(fragment_name, list(vary_on))
    if soft:
        fenced.mark_stale(key)
    else:
        fenced.delete(key)
