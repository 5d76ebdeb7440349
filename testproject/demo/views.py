"""Views of the demo page and its three actions (mark stale, delete, storm)."""

import time

from django.conf import settings
from django.contrib import messages
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from .report import REPORT_KEY, REPORT_TIMEOUT, compute_report, total_computations
from .storm import run_storm


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
