"""Views of the demo page and its actions, and of the three pages through the fence with their storms."""

import time
import uuid

from django.conf import settings
from django.contrib import messages
from django.core.cache import caches
from django.core.cache.utils import make_template_fragment_key
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from django_fence import fenced_cache_page

from . import expensive
from .counters import total_runs
from .report import REPORT_KEY, REPORT_TIMEOUT, compute_report, total_computations
from .storm import STORM_SIZE, run_request_storm, run_storm


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Serve the report through the fence, with the fence's counters."""
    fence = caches["default"]
    started = time.perf_counter()
    report = fence.get_or_set(REPORT_KEY, compute_report, REPORT_TIMEOUT)
    served_ms = (time.perf_counter() - started) * 1000
    context = {
        "report": report,
        "served_ms": served_ms,
        "computations": total_computations(),
        "stats": fence.stats(),
        "fence_options": settings.CACHES["default"].get("OPTIONS", {}),
        "backing_backend": settings.CACHES["backing"]["BACKEND"].rsplit(".", 1)[-1],
        "report_key": REPORT_KEY,
        "report_timeout": REPORT_TIMEOUT,
        "pages": [
            {
                "name": name,
                "url": reverse(f"demo:{name}"),
                "storm_url": reverse(f"demo:{name}_storm"),
                "uses": uses,
                "runs": total_runs(name),
            }
            for name, uses in PAGES.items()
        ],
        "storm_size": STORM_SIZE,
        "timeout": expensive.TIMEOUT,
    }
    return render(request, "demo/index.html", context)


@require_POST
def mark_stale(request: HttpRequest) -> HttpResponse:
    """Soft-invalidate the report: the next reader gets it while one worker recomputes."""
    caches["default"].mark_stale(REPORT_KEY)
    messages.info(request, f"Marked {REPORT_KEY!r} stale.")
    return redirect("demo:index")


@require_POST
def delete(request: HttpRequest) -> HttpResponse:
    """Delete the report: the next reader recomputes it, and concurrent readers wait."""
    caches["default"].delete(REPORT_KEY)
    messages.info(request, f"Deleted {REPORT_KEY!r}.")
    return redirect("demo:index")


@require_POST
def storm(request: HttpRequest) -> HttpResponse:
    """Fire concurrent get_or_set calls at a cold key and report how often it was computed."""
    result = run_storm()
    text = (
        f"Storm: {result.callers} concurrent get_or_set calls on a fresh key ran the computation "
        f"{result.computations} time(s) and returned {result.distinct_values} distinct value(s) "
        f"in {result.seconds:.2f} s; {result.errors} error(s)."
    )
    ok = result.computations == 1 and result.distinct_values == 1 and result.errors == 0
    (messages.success if ok else messages.warning)(request, text)
    return redirect("demo:index")


# --- three pages through the fence ---------------------------------------------------------------
# The counter name of each page's expensive part (expensive.py) and how the page reaches the fence.
PAGES = {
    expensive.PAGE: "@fenced_cache_page",
    expensive.FRAGMENT: "{% fencedcache %}",
    expensive.FENCED: "@fenced",
}


# The whole response is cached, so this page must not touch the session, messages or the CSRF
# token: each would add "Vary: Cookie" or a cookie, and Django (hence the fence) would not share it.
@fenced_cache_page(expensive.TIMEOUT)
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """A whole page under ``@fenced_cache_page``: the view runs once per expiry and URL."""
    return render(request, "demo/page.html", {"result": expensive.render_page_part(), "timeout": expensive.TIMEOUT})


@require_GET
def fragment(request: HttpRequest) -> HttpResponse:
    """A page whose template renders its expensive fragment inside ``{% fencedcache %}``."""
    context = {
        # Called by the template inside the fragment only, so it runs only when the fragment renders.
        "build_fragment": expensive.build_fragment,
        "fragment_name": expensive.FRAGMENT_NAME,
        "runs": lambda: total_runs(expensive.FRAGMENT),  # called after the fragment, so it includes this run
        "timeout": expensive.TIMEOUT,
    }
    return render(request, "demo/fragment.html", context)


@require_GET
def fenced_function(request: HttpRequest) -> HttpResponse:
    """A view that calls a function memoized with ``@fenced``."""
    result = expensive.fenced_primes(expensive.PRIME_COUNT)
    context = {
        "result": result,
        "runs": total_runs(expensive.FENCED),
        "timeout": expensive.TIMEOUT,
        "prime_count": expensive.PRIME_COUNT,
    }
    return render(request, "demo/fenced.html", context)


def make_cold(name: str) -> str:
    """Make page `name` cold and return the path a storm should request."""
    if name == expensive.PAGE:
        # A fresh URL is a fresh page in Django's cache_page keys (they include the query string).
        return f"{reverse('demo:page')}?storm={uuid.uuid4().hex[:8]}"
    if name == expensive.FRAGMENT:
        caches["default"].delete(make_template_fragment_key(expensive.FRAGMENT_NAME))
        return reverse("demo:fragment")
    expensive.fenced_primes.invalidate(expensive.PRIME_COUNT)
    return reverse("demo:fenced")


@require_POST
def page_storm(request: HttpRequest, name: str) -> HttpResponse:
    """Make a page cold, send it STORM_SIZE concurrent GETs and report how often its expensive part ran."""
    path = make_cold(name)
    before = total_runs(name)
    result = run_request_storm(path, request.get_host(), request.scheme)
    ran = total_runs(name) - before
    text = (
        f"Storm on {PAGES[name]}: {result.requests} concurrent GETs of {path} ran its expensive part "
        f"{ran} time(s) (runs {before} \N{RIGHTWARDS ARROW} {before + ran}); {result.ok} answered 200 OK, "
        f"{result.errors} error(s); slowest {result.slowest * 1000:.0f} ms, all done in {result.seconds:.2f} s."
    )
    (messages.success if ran == 1 and result.errors == 0 else messages.warning)(request, text)
    return redirect("demo:index")
