"""The storm site's pages: one render view behind ``cache_page`` and behind ``fenced_cache_page``.

Every render adds one to its page's counter in the backing cache (an atomic incr on the server),
so the count covers every gunicorn worker; ``/renders/`` reads the counters back.
"""

import os
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_page

from django_fence import fenced_cache_page

COUNTER_PREFIX = "storm:renders:"
PAGES = ("cache_page", "fenced_cache_page", "fenced_cache_page_no_grace")
FILLER = "<p>" + "lorem ipsum " * 600 + "</p>"  # about 7 KB, a modest page


def count_render(page: str) -> int:
    """Add one to the page's render counter (created by the warm-up; re-created if evicted)."""
    backing = caches["backing"]
    key = COUNTER_PREFIX + page
    try:
        return backing.incr(key)
    except ValueError:
        backing.add(key, 0, timeout=None)
        return backing.incr(key)


def spend(seconds: float) -> None:
    """The render's cost: a wait, or CPU time of this thread (slower when threads compete for it)."""
    if settings.STORM_RENDER == "cpu":
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
    else:
        time.sleep(seconds)


def render_view(page: str) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        render = count_render(page)
        spend(settings.STORM_RENDER_SECONDS)
        return HttpResponse(f"<h1>{page}</h1><p>render {render} by process {os.getpid()}</p>{FILLER}")

    view.__name__ = page
    return view


cache_page_view = cache_page(settings.STORM_PAGE_TTL, cache="backing")(render_view("cache_page"))
fenced_view = fenced_cache_page(settings.STORM_PAGE_TTL, cache="fenced")(render_view("fenced_cache_page"))
fenced_no_grace_view = fenced_cache_page(settings.STORM_PAGE_TTL, cache="fenced", grace=0)(
    render_view("fenced_cache_page_no_grace")
)


def renders(request: HttpRequest) -> JsonResponse:
    """How often each page has rendered, across the workers."""
    backing = caches["backing"]
    return JsonResponse({page: int(backing.get(COUNTER_PREFIX + page, 0)) for page in PAGES})


def warm(request: HttpRequest) -> HttpResponse:
    """Open this thread's clients of both caches and create the counters; answer with the worker's pid."""
    backing = caches["backing"]
    for page in PAGES:
        backing.add(COUNTER_PREFIX + page, 0, timeout=None)
    caches["fenced"].get_or_set(f"storm:warm:{os.getpid()}", lambda: "warm", 300)
    time.sleep(0.05)  # hold the thread a little, so that concurrent warm-ups reach the other threads
    return HttpResponse(str(os.getpid()))
