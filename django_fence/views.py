"""``metrics``: the fence's counters for Prometheus (text exposition) or as JSON (``?format=json``).

Who may read them: an active staff user with ``django_fence.view_fence``, or
a client sending ``Authorization: Bearer <DJANGO_FENCE["METRICS_TOKEN"]>``
(compared in constant time). Anyone else gets 403. The view is never
cached, even under FencedCacheMiddleware.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .conf import fence_settings
from .metrics import collect, prometheus_text

PERMISSION = "django_fence.view_fence"


def may_read(request: HttpRequest) -> bool:
    """Staff with the view permission, or the configured bearer token."""
    token = fence_settings().METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff and user.has_perm(PERMISSION))


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_read(request):
        return HttpResponseForbidden("The fence's metrics need a staff user with django_fence.view_fence, "
                                     "or the METRICS_TOKEN as a bearer token.")
    if request.GET.get("format") == "json":
        return JsonResponse({"aliases": collect()})
    try:
        body, content_type = prometheus_text()
    except ImportError:
        return HttpResponse("The Prometheus format needs prometheus_client: pip install 'django-fence[metrics]'. "
                            "?format=json needs nothing more.", status=501, content_type="text/plain")
    return HttpResponse(body, content_type=content_type)
