"""The poll views: a vote costs no SQL while memcached is up, refused votes change nothing."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_fence.polls.models import Choice, DirectVote, Question
from django_fence.polls.services import counters, pending_key, question_info, vote_queue
from tests import servers
from tests.conftest import fenced_caches, flush, votes_config

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db, pytest.mark.usefixtures("drain_fence_stats")]


@pytest.fixture
def poll_caches(settings: Any, memcached_location: str) -> Iterator[dict[str, Any]]:
    """Fence over LocMem for reads, the votes alias on the suite's memcached (pylibmc, ketama)."""
    flush("pylibmc", memcached_location)
    settings.CACHES = {**fenced_caches({"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                        "LOCATION": f"polls-{uuid.uuid4().hex}"}),
                       "votes": votes_config("pylibmc", memcached_location)}
    yield settings.CACHES
    caches["votes"].close()
    flush("pylibmc", memcached_location)


@pytest.fixture
def question(poll_caches: dict[str, Any]) -> Question:
    question = Question.objects.create(question_text="Tabs or spaces?")
    for text in ("Tabs", "Spaces", "Both"):
        question.choices.create(choice_text=text)
    return question


def choice_ids(question: Question) -> list[int]:
    return list(question.choices.values_list("pk", flat=True))


def vote_url(question_id: int) -> str:
    return reverse("polls:vote", args=[question_id])


def state(question: Question) -> tuple[list[int], int | None, list[int]]:
    """Everything a vote could change: database totals, the queue pointer, the pending counters."""
    ids = choice_ids(question)
    return (list(Choice.objects.filter(pk__in=ids).values_list("votes", flat=True)), vote_queue().pointer(),
            [counters().get_count(pending_key(pk)) for pk in ids])


def test_vote_runs_no_sql_while_memcached_is_up(question: Question, client: Client,
                                                django_assert_num_queries: Any) -> None:
    assert client.get(reverse("polls:detail", args=[question.pk])).status_code == 200  # warms the fence
    first = choice_ids(question)[0]
    with django_assert_num_queries(0):
        response = client.post(vote_url(question.pk), {"choice": first})
    assert response.status_code == 302
    assert response["Location"] == reverse("polls:results", args=[question.pk])
    assert counters().get_count(pending_key(first)) == 1
    assert Choice.objects.get(pk=first).votes == 0  # not in the database until the flush


def test_vote_live_totals_are_database_plus_queued(question: Question, client: Client) -> None:
    tabs, spaces, both = choice_ids(question)
    Choice.objects.filter(pk=tabs).update(votes=10)
    for choice in (tabs, spaces, spaces):
        assert Client().post(vote_url(question.pk), {"choice": choice}).status_code == 302
    caches["default"].delete(f"polls:totals:{question.pk}")
    data = client.get(reverse("polls:results_json", args=[question.pk])).json()
    assert data == {"question": question.pk, "question_text": "Tabs or spaces?", "open": True, "live": True,
                    "total": 13, "choices": [{"id": tabs, "choice_text": "Tabs", "votes": 11},
                                             {"id": spaces, "choice_text": "Spaces", "votes": 2},
                                             {"id": both, "choice_text": "Both", "votes": 0}]}
    page = client.get(reverse("polls:results", args=[question.pk]))
    assert page.status_code == 200
    assert page.context["rows"] == [("Tabs", 11), ("Spaces", 2), ("Both", 0)]


def test_results_compute_database_totals_once_while_hot(question: Question, client: Client,
                                                        django_assert_num_queries: Any) -> None:
    url = reverse("polls:results_json", args=[question.pk])
    client.get(url)
    with django_assert_num_queries(0):
        for _ in range(5):
            assert client.get(url).status_code == 200


def test_vote_second_vote_of_a_voter_is_409_and_changes_nothing(question: Question, client: Client) -> None:
    tabs, spaces, _ = choice_ids(question)
    assert client.post(vote_url(question.pk), {"choice": tabs}).status_code == 302
    before = state(question)
    response = client.post(vote_url(question.pk), {"choice": spaces})
    assert response.status_code == 409
    assert response.context["error_message"] == "You have already voted on this question."
    assert state(question) == before


def test_vote_voter_is_the_session_when_there_is_one(question: Question) -> None:
    tabs = choice_ids(question)[0]
    first, second = Client(), Client()
    for browser in (first, second):
        browser.cookies["sessionid"] = "same-session-key-for-both"
    assert first.post(vote_url(question.pk), {"choice": tabs}).status_code == 302
    assert second.post(vote_url(question.pk), {"choice": tabs}).status_code == 409


def test_vote_voter_stays_the_same_when_the_session_key_changes(question: Question) -> None:
    """Login rotates the session key: the voter cookie set with the first vote still identifies the voter."""
    first, second = question.pk, Question.objects.create(question_text="Other?")
    other_choice = second.choices.create(choice_text="Yes").pk
    browser = Client()
    browser.cookies["sessionid"] = "before-login"
    assert browser.post(vote_url(first), {"choice": choice_ids(question)[0]}).status_code == 302
    assert "polls_voter" in browser.cookies
    browser.cookies["sessionid"] = "after-login"
    assert browser.post(vote_url(first), {"choice": choice_ids(question)[1]}).status_code == 409
    assert browser.post(vote_url(second.pk), {"choice": other_choice}).status_code == 302
    assert browser.post(vote_url(second.pk), {"choice": other_choice}).status_code == 409


def test_vote_cookie_voter_who_gets_a_session_stays_the_same_voter(question: Question) -> None:
    browser = Client()
    assert browser.post(vote_url(question.pk), {"choice": choice_ids(question)[0]}).status_code == 302
    browser.cookies["sessionid"] = "logged-in-now"
    assert browser.post(vote_url(question.pk), {"choice": choice_ids(question)[0]}).status_code == 409


@pytest.mark.parametrize(("data", "error"), [
    ({}, "Choose one of the answers."),
    ({"choice": "abc"}, "The choice must be a number."),
    ({"choice": "other"}, "That answer does not belong to this question."),
])  # fmt: skip
def test_vote_bad_choice_is_400_with_the_form_error(question: Question, client: Client, data: dict[str, str],
                                                    error: str) -> None:
    other = Question.objects.create(question_text="Other?")
    other_choice = other.choices.create(choice_text="Elsewhere")
    if data.get("choice") == "other":
        data = {"choice": str(other_choice.pk)}
    before = state(question)
    response = client.post(vote_url(question.pk), data)
    assert response.status_code == 400
    assert response.context["form"].errors == {"choice": [error]}
    assert error in response.content.decode()
    assert state(question) == before


def test_vote_unknown_question_is_404(question: Question, client: Client) -> None:
    before = state(question)
    assert client.post(vote_url(question.pk + 1000), {"choice": choice_ids(question)[0]}).status_code == 404
    assert client.get(reverse("polls:results_json", args=[question.pk + 1000])).status_code == 404
    assert state(question) == before


def test_vote_closed_question_is_403_with_a_message(question: Question, client: Client) -> None:
    question.closes_at = timezone.now() - datetime.timedelta(seconds=1)
    question.save()  # the signal drops the fenced metadata, so the vote sees the closing time
    before = state(question)
    response = client.post(vote_url(question.pk), {"choice": choice_ids(question)[0]})
    assert response.status_code == 403
    assert response.context["error_message"] == "This question is closed; votes are no longer accepted."
    assert state(question) == before


def test_vote_get_is_405(question: Question, client: Client) -> None:
    assert client.get(vote_url(question.pk)).status_code == 405


def test_vote_csrf_stays_on(question: Question) -> None:
    strict = Client(enforce_csrf_checks=True)
    before = state(question)
    assert strict.post(vote_url(question.pk), {"choice": choice_ids(question)[0]}).status_code == 403
    assert state(question) == before
    page = strict.get(reverse("polls:detail", args=[question.pk]))
    token = page.cookies["csrftoken"].value
    response = strict.post(vote_url(question.pk), {"choice": choice_ids(question)[0], "csrfmiddlewaretoken": token})
    assert response.status_code == 302


@pytest.mark.parametrize("outage", ["stopped", "hung"])
def test_vote_goes_to_the_database_when_memcached_is_unavailable(question: Question, settings: Any,
                                                                 outage: str) -> None:
    """Memcached down or hanging: the vote is written with F() in a transaction, nothing is lost."""
    tabs, spaces, _ = choice_ids(question)
    with servers.blackhole() as hung_port:
        port = hung_port if outage == "hung" else servers.free_port()
        settings.CACHES = {**settings.CACHES, "votes": votes_config("pylibmc", f"127.0.0.1:{port}")}
        voter = Client()
        assert voter.get(reverse("polls:detail", args=[question.pk])).status_code == 200
        assert voter.post(vote_url(question.pk), {"choice": tabs}).status_code == 302
        assert voter.post(vote_url(question.pk), {"choice": spaces}).status_code == 409
        assert Client().post(vote_url(question.pk), {"choice": spaces}).status_code == 302
        results = voter.get(reverse("polls:results_json", args=[question.pk]))
    assert results.status_code == 200
    assert results.json()["live"] is False
    assert [c["votes"] for c in results.json()["choices"]] == [1, 1, 0]
    assert list(Choice.objects.order_by("pk").values_list("votes", flat=True)) == [1, 1, 0]
    assert DirectVote.objects.count() == 2


def test_vote_in_the_database_stores_a_digest_of_the_voter_not_the_session_key(question: Question,
                                                                               settings: Any) -> None:
    settings.CACHES = {**settings.CACHES, "votes": votes_config("pylibmc", f"127.0.0.1:{servers.free_port()}")}
    browser = Client()
    browser.cookies["sessionid"] = "a-secret-session-key"
    assert browser.post(vote_url(question.pk), {"choice": choice_ids(question)[0]}).status_code == 302
    [stored] = DirectVote.objects.values_list("voter", flat=True)
    assert "a-secret-session-key" not in stored
    derived = hashlib.sha256(b"django_fence.polls.voter:a-secret-session-key").hexdigest()[:32]
    assert stored == hashlib.sha256(f"cookie:{derived}".encode()).hexdigest()


def test_poll_pages_render(question: Question, client: Client) -> None:
    index = client.get(reverse("polls:index"))
    assert index.status_code == 200 and "Tabs or spaces?" in index.content.decode()
    detail = client.get(reverse("polls:detail", args=[question.pk]))
    assert detail.status_code == 200
    assert [text for _, text in detail.context["question"].choices] == ["Tabs", "Spaces", "Both"]
    assert "polls_voter" in detail.cookies


def test_poll_admin_lists_questions_and_choices(question: Question, admin_client: Client) -> None:
    for name in ("question", "choice", "queuecursor"):
        assert admin_client.get(reverse(f"admin:polls_{name}_changelist")).status_code == 200
    change = admin_client.get(reverse("admin:polls_question_change", args=[question.pk]))
    assert change.status_code == 200 and "Spaces" in change.content.decode()


def test_poll_admin_choice_edit_keeps_votes_applied_meanwhile(question: Question, admin_client: Client) -> None:
    choice = question.choices.get(choice_text="Tabs")
    url = reverse("admin:polls_choice_change", args=[choice.pk])
    assert admin_client.get(url).status_code == 200
    Choice.objects.filter(pk=choice.pk).update(votes=F("votes") + 7)  # a flush commits while the form is open
    response = admin_client.post(url, {"question": question.pk, "choice_text": "Tabs!", "votes": "0"})
    assert response.status_code == 302
    choice.refresh_from_db()
    assert (choice.choice_text, choice.votes) == ("Tabs!", 7)


def test_poll_admin_question_inline_edit_keeps_votes_applied_meanwhile(question: Question,
                                                                       admin_client: Client) -> None:
    url = reverse("admin:polls_question_change", args=[question.pk])
    assert admin_client.get(url).status_code == 200
    Choice.objects.filter(question=question).update(votes=F("votes") + 5)
    ids = choice_ids(question)
    data = {"question_text": "Tabs or spaces?", "pub_date_0": "2026-01-01", "pub_date_1": "00:00:00",
            "closes_at_0": "", "closes_at_1": "", "choices-TOTAL_FORMS": "4", "choices-INITIAL_FORMS": "3",
            "choices-MIN_NUM_FORMS": "0", "choices-MAX_NUM_FORMS": "1000"}
    for i, (pk, text) in enumerate(zip(ids, ["Tabs", "Spaces!", "Both"], strict=True)):
        data |= {f"choices-{i}-id": str(pk), f"choices-{i}-question": str(question.pk),
                 f"choices-{i}-choice_text": text, f"choices-{i}-votes": "0"}
    data |= {"choices-3-question": str(question.pk), "choices-3-choice_text": "Neither", "choices-3-votes": "9"}
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(question.choices.values_list("choice_text", "votes")) == [
        ("Tabs", 5), ("Spaces!", 5), ("Both", 5), ("Neither", 0)]


def test_question_info_is_cached_through_the_fence(question: Question, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(2):  # the question, its choices
        info = question_info(question.pk)
    with django_assert_num_queries(0):
        assert question_info(question.pk) == info
    assert caches["default"].stats()["recomputes"] >= 1


def test_setup_demo_creates_the_sample_poll_once(poll_caches: dict[str, Any]) -> None:
    from django.core.management import call_command

    from testproject.demo.management.commands.setup_demo import SAMPLE_CHOICES, SAMPLE_QUESTION, Command

    call_command(Command(), verbosity=0)
    call_command(Command(), verbosity=0)
    [sample] = Question.objects.filter(question_text=SAMPLE_QUESTION)
    assert [c.choice_text for c in sample.choices.all()] == list(SAMPLE_CHOICES)


def test_cast_vote_bad_input_raises_and_writes_nothing(question: Question) -> None:
    from django_fence.polls.services import cast_vote

    info = question_info(question.pk)
    assert info is not None
    before = state(question)
    with pytest.raises(ValueError, match="voter"):
        cast_vote(info, choice_ids(question)[0], "")
    with pytest.raises(ValueError, match="does not belong"):
        cast_vote(info, 10_000, "someone")
    assert state(question) == before


def test_poll_migrations_match_the_models() -> None:
    from django.core.management import call_command

    call_command("makemigrations", "polls", "--check", "--dry-run", verbosity=0)
