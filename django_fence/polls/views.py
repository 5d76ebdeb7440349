"""Poll pages. A vote reads the question through the fence and writes only to the votes cache.

Status codes say what went wrong, and a refused vote changes nothing: unknown
question 404, bad choice 400 (with the form error), closed question 403,
second vote 409, GET on the vote URL 405. CSRF protection stays on.
"""

from __future__ import annotations

import hashlib
import uuid

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from .forms import VoteForm
from .models import Question
from .services import Outcome, QuestionInfo, cast_vote, live_totals, question_info, results_payload

VOTER_COOKIE = "polls_voter"
VOTER_SALT = "django_fence.polls.voter"
VOTER_COOKIE_AGE = 365 * 24 * 3600


def _voter(request: HttpRequest) -> tuple[str, str | None]:
    """Who votes, and a new voter cookie to set, if one is needed.

    The signed ``polls_voter`` cookie is the identity whenever it is present:
    a session key changes at login (``cycle_key``), the cookie does not. A
    visitor without the cookie but with a session gets a cookie derived from
    the session key (a digest, never the key itself), so the vote cast before
    the cookie arrives and the votes after it are the same voter. A visitor who
    refuses cookies and has no session cannot be told apart from a new one.
    Reading ``session_key`` takes the key from the cookie without loading the
    session, so identifying the voter costs no query.
    """
    cookie = request.get_signed_cookie(VOTER_COOKIE, default=None, salt=VOTER_SALT)
    if cookie:
        return f"cookie:{cookie}", None
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        new = hashlib.sha256(f"{VOTER_SALT}:{session.session_key}".encode()).hexdigest()[:32]
    else:
        new = uuid.uuid4().hex
    return f"cookie:{new}", new


def _remember_voter(response: HttpResponse, new_cookie: str | None) -> HttpResponse:
    if new_cookie is not None:
        response.set_signed_cookie(VOTER_COOKIE, new_cookie, salt=VOTER_SALT, max_age=VOTER_COOKIE_AGE,
                                   httponly=True, samesite="Lax")
    return response


def _info_or_404(question_id: int) -> QuestionInfo:
    info = question_info(question_id)
    if info is None:
        raise Http404("No such question.")
    return info


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The latest questions."""
    questions = Question.objects.all()[:20]
    return render(request, "polls/index.html", {"questions": questions})


@require_GET
def detail(request: HttpRequest, question_id: int) -> HttpResponse:
    """The question and its vote form; gives a cookieless visitor a voter cookie."""
    info = _info_or_404(question_id)
    _, new_cookie = _voter(request)
    form = VoteForm(choices=list(info.choices))
    response = render(request, "polls/detail.html", {"question": info, "form": form})
    return _remember_voter(response, new_cookie)


def _refused(request: HttpRequest, info: QuestionInfo, status: int, message: str,
             form: VoteForm | None = None) -> HttpResponse:
    context = {"question": info, "form": form or VoteForm(choices=list(info.choices)), "error_message": message}
    return render(request, "polls/detail.html", context, status=status)


@require_POST
def vote(request: HttpRequest, question_id: int) -> HttpResponse:
    """Cast one vote: no SQL while the votes cache is up."""
    info = _info_or_404(question_id)
    form = VoteForm(request.POST, choices=list(info.choices))
    if not form.is_valid():
        return _refused(request, info, 400, "Your vote was not counted.", form)
    if not info.is_open():
        return _refused(request, info, 403, "This question is closed; votes are no longer accepted.")
    voter, new_cookie = _voter(request)
    outcome = cast_vote(info, form.cleaned_data["choice"], voter)
    if outcome is Outcome.DUPLICATE:
        return _refused(request, info, 409, "You have already voted on this question.")
    response = HttpResponseRedirect(reverse("polls:results", args=[info.id]))
    return _remember_voter(response, new_cookie)


@require_GET
def results(request: HttpRequest, question_id: int) -> HttpResponse:
    """Live totals: the database's (through the fence) plus the votes not yet flushed."""
    info = _info_or_404(question_id)
    totals = live_totals(info)
    rows = [(text, totals.votes.get(pk, 0)) for pk, text in info.choices]
    return render(request, "polls/results.html", {"question": info, "rows": rows, "totals": totals})


@never_cache
@require_GET
def results_json(request: HttpRequest, question_id: int) -> JsonResponse:
    """The live totals as JSON, for pages that refresh them."""
    info = _info_or_404(question_id)
    return JsonResponse(results_payload(info, live_totals(info)))
