"""URLs of the votes benchmark site: the poll app, and the baseline vote that writes to the database directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import include, path, reverse
from django.views.decorators.http import require_POST

from django_fence.polls.models import Choice, Question


def count_queries(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Middleware: the number of SQL statements the request ran, in the X-SQL-Queries header."""

    def middleware(request: HttpRequest) -> HttpResponse:
        count = [0]

        def counter(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            count[0] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            response = get_response(request)
        response["X-SQL-Queries"] = str(count[0])
        return response

    return middleware


@require_POST
def direct_vote(request: HttpRequest, question_id: int) -> HttpResponse:
    """The usual Django poll vote: read the question and choice, then F() + 1 in a transaction."""
    question = get_object_or_404(Question, pk=question_id)
    if not question.is_open():
        return HttpResponse("closed", status=403)
    try:
        choice = question.choices.get(pk=int(request.POST["choice"]))
    except (KeyError, ValueError, Choice.DoesNotExist):
        return HttpResponseBadRequest("bad choice")
    with transaction.atomic():
        Choice.objects.filter(pk=choice.pk).update(votes=F("votes") + 1)
    return HttpResponseRedirect(reverse("polls:results", args=[question.pk]))


urlpatterns = [
    path("polls/", include("django_fence.polls.urls")),
    path("direct/<int:question_id>/vote/", direct_vote, name="direct_vote"),
]
