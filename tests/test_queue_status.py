"""queue_status for the admin dashboard, and FlushReport.lines() shared by flush_vote_queue and the admin."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management.color import color_style

from django_fence.polls.flush import FlushReport, flush_votes
from django_fence.polls.management.commands.flush_vote_queue import Command
from django_fence.polls.models import Question, QueueCursor
from django_fence.polls.services import cast_vote, question_info, vote_queue
from django_fence.polls.status import QueueStatus, queue_status
from django_fence.queues import EPOCH_BITS, epoch_of
from tests import servers
from tests.conftest import fenced_caches, flush, votes_config

pytestmark = pytest.mark.timeout(60)
PREFIX = "polls-votes"
LONG_AGO = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)


def poll_caches(votes_location: str) -> dict[str, Any]:
    backing = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "status-backing"}
    return {**fenced_caches(backing), "votes": votes_config("pylibmc", votes_location)}


def make_question() -> Question:
    question = Question.objects.create(question_text="Which one?")
    for i in range(3):
        question.choices.create(choice_text=f"choice {i}")
    return question


@pytest.fixture
def poll(settings: Any, memcached_location: str, db: Any) -> Iterator[Question]:
    """A question with three choices; the votes alias on the suite's memcached, flushed."""
    flush("pylibmc", memcached_location)
    settings.CACHES = poll_caches(memcached_location)
    yield make_question()
    caches["votes"].close()


def vote(question: Question, count: int) -> None:
    """Cast ``count`` queued votes round-robin over the choices."""
    info = question_info(question.pk)
    assert info is not None
    for i in range(count):
        assert cast_vote(info, info.choices[i % 3][0], f"voter-{uuid.uuid4().hex}").value == "queued"


def pointer() -> int:
    value = vote_queue().pointer()
    assert value is not None
    return value


def memcached_counts(location: str) -> dict[str, int]:
    """memcached's own counts of reads and of every kind of write, to prove what a call sent."""
    from pymemcache.client.base import Client

    host, port = location.split(":")
    client = Client((host, int(port)))
    stats = client.stats()
    client.close()
    writes = ("cmd_set", "cmd_touch", "cmd_flush", "incr_hits", "incr_misses", "decr_hits", "decr_misses",
              "delete_hits", "delete_misses")
    return {"reads": int(stats[b"cmd_get"]), "writes": sum(int(stats[name.encode()]) for name in writes)}


def test_queue_status_is_empty_before_any_vote(poll: Question) -> None:
    assert queue_status() == QueueStatus(
        prefix=PREFIX, depth=0, pointer=None, position=0, applied=0, lost=0, last_flush=None, lag_seconds=0.0,
        stalled_slot=None, numbering_changed=False, error=None)


def test_queue_status_reads_the_pointer_once_queries_once_and_writes_nothing(
        poll: Question, memcached_location: str, django_assert_num_queries: Any) -> None:
    before = memcached_counts(memcached_location)
    with django_assert_num_queries(1):
        status = queue_status()
    assert memcached_counts(memcached_location) == {"reads": before["reads"] + 1, "writes": before["writes"]}
    assert (status.depth, status.pointer) == (0, None)
    assert vote_queue().pointer() is None  # not created, as a producer or the flush would
    assert not QueueCursor.objects.exists()


def test_queue_status_counts_the_votes_cast(poll: Question) -> None:
    vote(poll, 3)
    assert queue_status(clock=lambda: 1e12) == QueueStatus(
        prefix=PREFIX, depth=3, pointer=pointer(), position=0, applied=0, lost=0, last_flush=None,
        lag_seconds=None, stalled_slot=None, numbering_changed=False, error=None)


def test_queue_status_after_a_flush_has_no_depth_and_no_lag(poll: Question) -> None:
    vote(poll, 4)
    assert flush_votes().votes == 4
    cursor = QueueCursor.objects.get()
    assert cursor.updated_at is not None
    assert queue_status(clock=lambda: cursor.updated_at.timestamp() + 3600) == QueueStatus(
        prefix=PREFIX, depth=0, pointer=pointer(), position=pointer(), applied=4, lost=0,
        last_flush=cursor.updated_at, lag_seconds=0.0, stalled_slot=None, numbering_changed=False, error=None)


def test_queue_status_lag_is_the_time_since_the_last_flush_commit_when_votes_wait(poll: Question) -> None:
    vote(poll, 3)
    flush_votes()
    position = pointer()
    vote(poll, 2)
    QueueCursor.objects.update(updated_at=LONG_AGO)
    assert queue_status(clock=lambda: LONG_AGO.timestamp() + 90.5) == QueueStatus(
        prefix=PREFIX, depth=2, pointer=position + 2, position=position, applied=3, lost=0, last_flush=LONG_AGO,
        lag_seconds=90.5, stalled_slot=None, numbering_changed=False, error=None)


def test_queue_status_counts_the_slots_a_flush_reported_lost(poll: Question) -> None:
    vote(poll, 5)
    evicted = pointer() - 4
    caches["votes"].delete(vote_queue().slot_key(evicted))
    assert flush_votes(grace=0).lost == [evicted]
    status = queue_status()
    assert (status.depth, status.applied, status.lost, status.position, status.stalled_slot) == (
        0, 4, 1, evicted + 4, None)


def test_queue_status_names_the_slot_the_drain_waits_on(poll: Question) -> None:
    vote(poll, 2)
    taken = int(caches["votes"].incr(vote_queue().pointer_key))  # a producer between its incr and its add
    vote(poll, 3)
    report = flush_votes(grace=10)
    assert (report.votes, report.waiting_on) == (2, taken)
    status = queue_status()
    assert (status.depth, status.stalled_slot, status.position, status.applied) == (4, taken, taken - 1, 2)


def test_queue_status_reports_memcached_down_and_still_shows_the_database(
        settings: Any, db: Any, memcached_server: servers.Server) -> None:
    settings.CACHES = poll_caches(memcached_server.url)
    question = make_question()
    vote(question, 3)
    flush_votes()
    vote(question, 2)
    QueueCursor.objects.update(updated_at=LONG_AGO)
    row = QueueCursor.objects.values().get()
    memcached_server.stop()
    status = queue_status(clock=lambda: LONG_AGO.timestamp() + 7)
    assert status.error is not None
    assert status.error.startswith(f"QueueUnavailable: queue {PREFIX!r}: read the pointer: ")
    assert status == QueueStatus(
        prefix=PREFIX, depth=None, pointer=None, position=row["position"], applied=3, lost=0, last_flush=LONG_AGO,
        lag_seconds=7.0, stalled_slot=None, numbering_changed=False, error=status.error)
    assert QueueCursor.objects.values().get() == row
    caches["votes"].close()


def test_queue_status_writes_no_cursor_when_memcached_is_down(
        settings: Any, db: Any, memcached_server: servers.Server) -> None:
    settings.CACHES = poll_caches(memcached_server.url)
    memcached_server.stop()
    status = queue_status()
    assert status.error is not None and status.error.startswith("QueueUnavailable: ")
    assert (status.depth, status.applied, status.lost, status.last_flush, status.lag_seconds) == (
        None, 0, 0, None, None)
    assert not QueueCursor.objects.exists()
    caches["votes"].close()


def test_queue_status_counts_only_the_new_numbering_after_the_pointer_was_recreated(poll: Question) -> None:
    vote(poll, 1)
    flush_votes()
    vote(poll, 4)  # queued in the old numbering, never seen by a flush
    fresh = (epoch_of(pointer()) + 1) << EPOCH_BITS
    caches["votes"].set(vote_queue().pointer_key, fresh)  # memcached restarted: a producer recreated it
    vote(poll, 2)
    status = queue_status()
    assert (status.depth, status.pointer, status.numbering_changed) == (2, fresh + 2, True)
    flush_votes()  # probes the old numbering: every slot is known again
    status = queue_status()
    assert (status.depth, status.applied, status.numbering_changed) == (0, 7, False)


def test_queue_status_says_the_numbering_changed_when_the_pointer_is_gone(poll: Question) -> None:
    vote(poll, 2)
    flush_votes()
    caches["votes"].delete(vote_queue().pointer_key)
    status = queue_status()
    assert (status.depth, status.pointer, status.numbering_changed, status.error) == (0, None, True, None)


def full_report(dry_run: bool = False) -> FlushReport:
    return FlushReport(dry_run=dry_run, votes=7, questions={1, 2}, lost=[3, 4, 5, 9], malformed=2, orphaned=1,
                       waiting_on=10, stale_pointer=8, probed=4, probe_stopped_at=11, direct=3, conflicts=2,
                       seconds=1.25)


def test_flush_report_lines_give_each_text_its_level() -> None:
    assert full_report().lines() == [
        ("success", "Applied 7 vote(s) to 2 question(s) in 1.25s; lost slots: 4."),
        ("error", "Lost slots (empty past the grace period): 3-5, 9"),
        ("info", "Waiting on slot 10: taken but not written yet; the next run retries it."),
        ("warning", "Skipped 2 slot(s) that held no vote."),
        ("warning", "Dropped 1 vote(s) for choices that no longer exist."),
        ("error", "The queue pointer was lost: probed 4 vote(s) of the old numbering, up to slot 11; votes queued "
                  "past it, if any, cannot be counted."),
        ("info", "Resolved 3 slot(s) whose vote went to the database instead."),
        ("warning", "The queue pointer (8) was behind the database; it was reset."),
        ("info", "Another flush committed first 2 time(s); its batches were skipped."),
    ]


def test_flush_report_lines_of_a_quiet_dry_run_are_one_info_line() -> None:
    assert FlushReport(dry_run=True, seconds=0.5).lines() == [
        ("info", "Would apply 0 vote(s) to 0 question(s) in 0.50s; lost slots: 0.")]


def test_flush_command_styles_errors_and_warnings_only() -> None:
    style = color_style(force_color=True)
    expected = [style.ERROR(text) if level == "error" else style.WARNING(text) if level == "warning" else text
                for level, text in full_report().lines()]
    assert Command(force_color=True)._summary(full_report()) == "\n".join(expected)
    assert expected[0] == "Applied 7 vote(s) to 2 question(s) in 1.25s; lost slots: 4."
    assert expected[1] != "Lost slots (empty past the grace period): 3-5, 9"  # really styled
