"""The Fence section of the admin: a dashboard, a page per stream, and their actions.

Every view is mounted through ``self.admin_site.admin_view`` (login, ``never_cache``,
``csrf_protect``). Reading needs ``django_fence.view_fence`` (or change, as everywhere in
the admin); every action needs ``django_fence.change_fence``, is POST only, goes through a
confirmation page if it is destructive, reports through ``messages`` and is written to the
admin log with the user. A server that is down shows an error panel, never a 500.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from typing import Any
from urllib.parse import quote, unquote, urlencode

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.cache.backends.base import InvalidCacheBackendError
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
)
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, register_converter, reverse
from redis.exceptions import RedisClusterException, RedisError

from . import dashboard, metrics
from .conf import fence_settings
from .exceptions import BackendUnavailable
from .models import Fence
from .stream_actions import ACTIONS, ActionFailed, StreamAction
from .streams.keys import stream_keys


class StreamNameConverter:
    """Any non-empty stream name, in one path segment: line breaks, "/" and dot segments included."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        # Every reserved character escaped (the name is one path segment, "/" included), and a name
        # that is a dot segment too: a browser or proxy would resolve "a/../b" or ".." to another URL.
        quoted = quote(value, safe="")
        return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


register_converter(StreamNameConverter, "fence_stream")

PANELS = ("fence", "streams", "queue")
RECENT_ACTIONS = 10  # the dashboard's list of the last actions on the fence, from the admin log
#: What a server that is down (or answers nonsense) raises: an error panel, not a 500.
SERVER_ERRORS = (BackendUnavailable, RedisError, RedisClusterException, OSError)


def unavailable(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def log_change(request: HttpRequest, object_id: str, object_repr: str, message: str) -> None:
    """One admin log entry for an action on the fence (no model instance: the content type is Fence's)."""
    content_type = ContentType.objects.get_for_model(Fence, for_concrete_model=False)
    def text(value: str) -> str:  # names and keys come from Redis: PostgreSQL refuses NUL in text
        return value.replace("\x00", "\\x00")

    LogEntry.objects.create(user_id=request.user.pk or 0, content_type_id=content_type.pk,
                            object_id=text(object_id), object_repr=text(object_repr)[:200], action_flag=CHANGE,
                            change_message=text(message))


@admin.register(Fence)
class FenceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No rows to list: the changelist is the dashboard."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("", view(self.dashboard_view), name="django_fence_fence_changelist"),
            path("data/", view(self.data_view), name="django_fence_dashboard_data"),
            path("votes/flush/", view(self.flush_view), name="django_fence_flush_votes"),
            path("streams/<str:label>/expire/", view(self.expire_view), name="django_fence_expire"),
            path("streams/<str:label>/stream/<fence_stream:name>", view(self.stream_view), name="django_fence_stream"),
        ]

    # -- helpers --------------------------------------------------------------------------------------
    def _require(self, request: HttpRequest, change: bool = False) -> None:
        allowed = self.has_change_permission(request) if change else self.has_view_permission(request)
        if not allowed:
            raise PermissionDenied

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        request.current_app = self.admin_site.name  # {% url 'admin:...' %} in our templates: this site
        return {**self.admin_site.each_context(request), "title": title, "opts": self.opts,
                "can_change": self.has_change_permission(request), **extra}

    def _url(self, name: str, *args: str, query: str = "") -> str:
        """One of our URLs on this admin site (another AdminSite mounting FenceAdmin keeps its own)."""
        url = reverse(f"admin:{name}", args=args, current_app=self.admin_site.name)
        return f"{url}?{query}" if query else url

    def _connection(self, label: str) -> dashboard.Connection:
        try:
            return dashboard.connections()[label]
        except KeyError:
            raise Http404(f"No stream server is configured under {label!r}.") from None

    # -- the dashboard --------------------------------------------------------------------------------
    def numbers(self) -> dict[str, Any]:
        """Everything the dashboard shows, as JSON-ready data."""
        aliases = metrics.collect()
        for alias, history in metrics.history().items():
            aliases.setdefault(alias, {})["history"] = history
        servers: dict[str, Any] = {}
        for label, connection in dashboard.connections().items():
            try:
                rows, total = dashboard.stream_summaries(connection)
                servers[label] = {"streams": [dataclasses.asdict(row) for row in rows], "total": total, "error": None}
            except Exception as exc:  # a server that is down, or an alias that is no Redis cache
                servers[label] = {"streams": [], "total": 0, "error": unavailable(exc)}
        queue = None
        if apps.is_installed("django_fence.polls"):
            from .polls.status import queue_status

            try:
                queue = dataclasses.asdict(queue_status())
            except Exception as exc:  # a votes alias missing from CACHES (check E010 says so): a panel, not a 500
                queue = {"prefix": fence_settings().POLLS_QUEUE_PREFIX, "error": unavailable(exc)}
        return {"aliases": aliases, "servers": servers, "queue": queue}

    def _panels(self, request: HttpRequest, numbers: dict[str, Any]) -> dict[str, str]:
        caches = [(alias, counts, dashboard.chart(counts.get("history", {})))
                  for alias, counts in numbers["aliases"].items()]
        context = {"numbers": numbers, "caches": caches, "can_change": self.has_change_permission(request),
                   "now": time.time()}
        return {panel: render_to_string(f"admin/django_fence/panel_{panel}.html", context, request)
                for panel in PANELS}

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        self._require(request)
        numbers = self.numbers()
        settings = fence_settings()
        content_type = ContentType.objects.get_for_model(Fence, for_concrete_model=False)
        recent = LogEntry.objects.filter(content_type=content_type).select_related("user")[:RECENT_ACTIONS]
        context = self._context(request, "Fence dashboard", panels=self._panels(request, numbers),
                                digest=digest(numbers), refresh_interval=settings.ADMIN_REFRESH_INTERVAL,
                                refresh_max_factor=settings.ADMIN_REFRESH_MAX_FACTOR, recent_actions=recent)
        return TemplateResponse(request, "admin/django_fence/dashboard.html", context)

    def data_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's numbers and its panels rendered anew, for the page's auto-refresh."""
        self._require(request)
        numbers = self.numbers()
        return JsonResponse({"digest": digest(numbers), "numbers": numbers,
                             "panels": self._panels(request, numbers)}, encoder=DjangoJSONEncoder)

    # -- actions on the dashboard ---------------------------------------------------------------------
    def flush_view(self, request: HttpRequest) -> HttpResponse:
        self._require(request, change=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not apps.is_installed("django_fence.polls"):
            raise Http404("The poll app is not installed.")
        from .polls.flush import flush_votes
        from .queues import QueueUnavailable

        try:
            report = flush_votes()
        except QueueUnavailable as exc:
            messages.error(request, f"The vote queue is unreachable: {exc}")
            return HttpResponseRedirect(self._url("django_fence_fence_changelist"))
        except InvalidCacheBackendError as exc:  # check E010 names it too
            messages.error(request, f"The vote queue cannot be flushed: {exc}")
            return HttpResponseRedirect(self._url("django_fence_fence_changelist"))
        if report.pointer_error is not None:  # flush_votes drained what the database knew, then stopped
            messages.error(request, f"The vote queue is unreachable ({report.pointer_error}): only the slots "
                                    "already known were applied.")
        for level, line in report.lines():
            messages.add_message(request, MESSAGE_LEVELS[level], line)
        log_change(request, "votes", "vote queue", report.lines()[0][1])
        return HttpResponseRedirect(self._url("django_fence_fence_changelist"))

    def expire_view(self, request: HttpRequest, label: str) -> HttpResponse:
        self._require(request, change=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        connection = self._connection(label)
        back = request.POST.get("next") or ""
        if not back.startswith(self._url("django_fence_fence_changelist")) or "\\" in back:
            back = self._url("django_fence_fence_changelist")
        try:
            removed = connection.streams().psexpire()
        except SERVER_ERRORS as exc:
            messages.error(request, f"Redis {label!r} is unreachable: {exc}")
            return HttpResponseRedirect(back)
        message = f"ran expiry on every stream: removed {removed} expired item(s)."
        messages.success(request, f"Streams on {label!r}: {message}")
        log_change(request, f"{label}:", f"streams on {label}", message[0].upper() + message[1:])
        return HttpResponseRedirect(back)

    # -- a stream -------------------------------------------------------------------------------------
    def stream_view(self, request: HttpRequest, label: str, name: str) -> HttpResponse:
        self._require(request, change=request.method == "POST")
        connection = self._connection(label)
        try:
            streams = connection.streams()
            if not dashboard.stream_exists(streams, name):
                raise Http404(f"No stream {name!r} on {label!r}.")
            if request.method == "POST":
                return self._act(request, streams, label, name)
            return self._stream_page(request, streams, label, name)
        except SERVER_ERRORS as exc:
            if request.method == "POST":  # never a page a reload would post again
                messages.error(request, f"Redis {label!r} is unreachable; nothing was done: {unavailable(exc)}")
                return HttpResponseRedirect(self._url("django_fence_stream", label, name,
                                                      query=kept_filters(request.POST.get("_filters", ""))))
            context = self._context(request, f"Stream {name}", label=label, name=name, error=unavailable(exc))
            return TemplateResponse(request, "admin/django_fence/stream.html", context, status=503)

    def _stream_page(self, request: HttpRequest, streams: Any, label: str, name: str) -> HttpResponse:
        prefix = request.GET.get("q", "")
        keys = stream_keys(name, streams.commands.cluster)
        items = dashboard.StreamItems(streams.client, keys, prefix)
        paginator: Paginator[dashboard.Item] = Paginator(items, fence_settings().ADMIN_PAGE_SIZE)
        page = paginator.get_page(request.GET.get("p"))
        counts = streams.client.pipeline(transaction=False).scard(keys.excluded).zcard(keys.expiring).execute()
        forms = {action.name: action(prefix=action.name) for action in ACTIONS.values()}
        context = self._context(
            request, f"Stream {name}", label=label, name=name, page=page, paginator=paginator, prefix=prefix,
            excluded=counts[0], expiring=counts[1], truncated=items.truncated, matched=items.matched, forms=forms,
            filters=kept_filters(request.GET.urlencode()),
            page_range=paginator.get_elided_page_range(page.number), error=None,
        )
        return TemplateResponse(request, "admin/django_fence/stream.html", context)

    def _act(self, request: HttpRequest, streams: Any, label: str, name: str) -> HttpResponse:
        here = self._url("django_fence_stream", label, name, query=kept_filters(request.POST.get("_filters", "")))
        action_class = ACTIONS.get(request.POST.get("action", ""))
        if action_class is None:
            messages.error(request, "Unknown action.")
            return HttpResponseRedirect(here)
        form: StreamAction = action_class(request.POST, prefix=action_class.name)
        if not form.is_valid():
            problems = "; ".join(f"{error}" if field == "__all__" else f"{form[field].label}: "
                                 f"{error}" for field, errors in form.errors.items() for error in errors)
            messages.error(request, f"{action_class.label}: {problems}")
            return HttpResponseRedirect(here)
        if action_class.destructive and request.POST.get("confirmed") != "yes":
            context = self._context(request, "Are you sure?", label=label, name=name, form=form, back=here,
                                    filters=request.POST.get("_filters", ""), action=action_class,
                                    consequence=form.consequence(streams, name))
            return TemplateResponse(request, "admin/django_fence/confirm.html", context)
        try:
            done = form.perform(streams, name)
        except ActionFailed as exc:
            messages.error(request, f"{action_class.label}: {exc}")
            return HttpResponseRedirect(here)
        except SERVER_ERRORS as exc:  # sent, maybe run (a timeout): say so, and log the attempt
            outcome = f"{action_class.label}: the outcome is unknown ({unavailable(exc)})"
            messages.error(request, f"Stream {name!r}: {outcome}; look at the stream before trying again.")
            log_change(request, f"{label}:{name}", f"stream {name} on {label}", outcome)
            return HttpResponseRedirect(here)
        messages.success(request, f"Stream {name!r}: {done}")  # the admin capitalizes a message's first letter
        log_change(request, f"{label}:{name}", f"stream {name} on {label}", f"{action_class.label}: {done}")
        if action_class.name == "delete_stream":
            return HttpResponseRedirect(self._url("django_fence_fence_changelist"))
        return HttpResponseRedirect(here)


def kept_filters(query: str) -> str:
    """The stream page's search and page number from a query string, to come back to after an action."""
    given = QueryDict(query)
    return urlencode({name: given[name] for name in ("q", "p") if given.get(name)})


MESSAGE_LEVELS = {"success": messages.SUCCESS, "info": messages.INFO, "warning": messages.WARNING,
                  "error": messages.ERROR}


def digest(numbers: dict[str, Any]) -> str:
    """A fingerprint of the numbers: the page slows its refresh while it does not change.

    What moves with the clock alone is left out: the minutes the history points are labelled with
    and the queue's lag (the page counts the lag up itself). Otherwise a queue with a backlog, or the
    turn of each minute, would read as a change and keep the refresh at its fastest (PITFALLS 25).
    """
    steady = copy.deepcopy(numbers)
    for counts in steady["aliases"].values():
        for point in counts.get("history", {}).get("points", []):
            del point["minute"]
    if steady["queue"] is not None:
        steady["queue"].pop("lag_seconds", None)
    return hashlib.sha1(json.dumps(steady, sort_keys=True, cls=DjangoJSONEncoder).encode()).hexdigest()
