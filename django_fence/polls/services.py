"""What a vote and a results page do, kept out of the views so the command and tests share it.

A vote while the votes cache is up touches only that cache: the voter mark
(``add``: only the first vote of a voter wins), a queue slot (``incr`` + ``set``)
and the choice's pending counter (``incr``). The question's metadata comes
through the fence, so a vote runs no SQL. If the votes cache is down, the vote
is written to the database (``F()`` in a transaction) and a :class:`DirectVote`
row keeps one vote per voter.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from django_fence.conf import fence_settings
from django_fence.counters import CounterService
from django_fence.exceptions import BackendUnavailable, translated
from django_fence.queues import QueueUnavailable, WriteBehindQueue

from .models import Choice, DirectVote, Question

logger = logging.getLogger(__name__)

VOTER_MARK_TTL = 30 * 24 * 3600  # how long "this voter voted" is kept for a question that never closes


def votes_cache() -> BaseCache:
    """The alias holding the queue, the pending counters and the voter marks."""
    return caches[fence_settings().POLLS_VOTES_CACHE]


def fenced_cache() -> BaseCache:
    """The FencedCache alias question metadata and database totals are read through."""
    return caches[fence_settings().POLLS_FENCED_CACHE]


def vote_queue() -> WriteBehindQueue:
    """The write-behind queue of votes, on the votes cache."""
    return WriteBehindQueue(votes_cache(), fence_settings().POLLS_QUEUE_PREFIX)


def counters() -> CounterService:
    """The pending counters (votes queued and not yet flushed, per choice), on the votes cache."""
    return CounterService(votes_cache())


def pending_key(choice_id: int) -> str:
    """The counter of a choice's votes that are queued and not yet flushed."""
    return f"{fence_settings().POLLS_QUEUE_PREFIX}-pending-{choice_id}"


SETTLED_TTL = 30 * 24 * 3600  # a settled batch leaves the cursor on the flush's next commit, long before


def settle_pending(prefix: str, unsettled: dict[str, dict[str, int]]) -> set[str]:
    """Take committed batches' votes out of the pending counters, each batch exactly once.

    ``unsettled`` maps a cursor version to the votes per choice id its commit
    applied. A ``<prefix>-settled-<version>`` marker (``add``: only one caller
    wins) guards each decrement, so a flush killed after its commit, a rerun,
    and an overlapping flush settle a batch once between them. Returns the
    versions that are settled now (by this call or earlier); the others are
    retried by the next flush.
    """
    done: set[str] = set()
    cache = votes_cache()
    for version, per_choice in sorted(unsettled.items(), key=lambda item: int(item[0])):
        try:
            with translated("polls: mark a batch settled"):
                first = cache.add(f"{prefix}-settled-{version}", 1, timeout=SETTLED_TTL)
        except BackendUnavailable:
            logger.warning("polls: could not settle the pending counters of batch %s; retried later", version,
                           exc_info=True)
            break
        if first:
            try:
                counters().bulk_bump({pending_key(int(choice)): -count for choice, count in per_choice.items()})
            except BackendUnavailable:
                logger.error("polls: the pending counters of batch %s could not be decremented; live totals count "
                             "it twice until flush_vote_queue --rebuild-totals", version, exc_info=True)
        done.add(version)
    return done


def _question_key(question_id: int) -> str:
    return f"polls:question:{question_id}"


def _totals_key(question_id: int) -> str:
    return f"polls:totals:{question_id}"


@dataclass(frozen=True)
class QuestionInfo:
    """What a vote needs to know about a question, cached through the fence."""

    id: int
    question_text: str
    closes_at: datetime.datetime | None
    choices: tuple[tuple[int, str], ...]

    def is_open(self, now: datetime.datetime | None = None) -> bool:
        return self.closes_at is None or (now or timezone.now()) < self.closes_at


def _load_question(question_id: int) -> QuestionInfo | bool:
    question = Question.objects.filter(pk=question_id).first()
    if question is None:
        return False  # cached too, briefly: a flood of votes on a bad id must not reach the database
    choices = tuple(question.choices.values_list("pk", "choice_text"))
    return QuestionInfo(question.pk, question.question_text, question.closes_at, choices)


def question_info(question_id: int) -> QuestionInfo | None:
    """The question's metadata through the fence (computed once however many requests miss), or None."""
    timeout = fence_settings().POLLS_QUESTION_TIMEOUT
    info = fenced_cache().get_or_set(_question_key(question_id), lambda: _load_question(question_id), timeout)
    return info if isinstance(info, QuestionInfo) else None


def forget_question(question_id: int) -> None:
    """Drop a question's cached metadata and totals (after an edit, or after a flush changed totals)."""
    try:
        with translated("polls: drop cached question data"):
            fenced_cache().delete_many([_question_key(question_id), _totals_key(question_id)])
    except BackendUnavailable:  # the cache being down must not fail a save in the admin
        logger.warning("polls: could not drop the cached data of question %s", question_id, exc_info=True)


def forget_totals(question_id: int) -> None:
    """Drop a question's cached database totals (a flush just changed them)."""
    try:
        with translated("polls: drop cached totals"):
            fenced_cache().delete(_totals_key(question_id))
    except BackendUnavailable:
        logger.warning("polls: could not drop the cached totals of question %s", question_id, exc_info=True)


class Outcome(enum.Enum):
    """How a vote ended."""

    QUEUED = "queued"  # in the write-behind queue; the flush writes it
    DIRECT = "direct"  # the votes cache was down: written to the database
    DUPLICATE = "duplicate"  # this voter already voted on this question


def voter_digest(voter: str) -> str:
    """The sha256 hex digest a voter is stored under: a session key never leaves the request."""
    return hashlib.sha256(voter.encode()).hexdigest()


def voter_mark_key(question_id: int, voter: str) -> str:
    """The votes-cache key saying that ``voter`` voted on the question."""
    return f"{fence_settings().POLLS_QUEUE_PREFIX}-voted-{question_id}-{voter_digest(voter)[:32]}"


def _mark_ttl(info: QuestionInfo) -> int:
    if info.closes_at is None:
        return VOTER_MARK_TTL
    remaining = (info.closes_at - timezone.now()).total_seconds()
    return max(60, int(remaining) + 3600)


def cast_vote(info: QuestionInfo, choice_id: int, voter: str) -> Outcome:
    """Record one vote of ``voter`` for ``choice_id`` (already checked to belong to ``info``)."""
    if not voter or not isinstance(voter, str):
        raise ValueError("voter must be a non-empty str.")
    if choice_id not in {pk for pk, _ in info.choices}:
        raise ValueError(f"choice {choice_id} does not belong to question {info.id}.")
    cache = votes_cache()
    try:
        with translated("polls: mark the voter"):
            first = cache.add(voter_mark_key(info.id, voter), choice_id, timeout=_mark_ttl(info))
    except BackendUnavailable:
        logger.warning("polls: votes cache down, writing a vote on question %s to the database", info.id,
                       exc_info=True)
        return _vote_in_database(info.id, choice_id, voter)
    if not first:
        return Outcome.DUPLICATE
    try:
        vote_queue().enqueue(f"{info.id}:{choice_id}")
    except QueueUnavailable as exc:
        logger.warning("polls: queue down (slot %s), writing a vote on question %s to the database",
                       exc.slot, info.id, exc_info=True)
        return _vote_in_database(info.id, choice_id, voter, slot=exc.slot)
    try:
        counters().increment(pending_key(choice_id))
    except BackendUnavailable:
        # The vote is queued and will be flushed; only the live total misses it until then.
        logger.warning("polls: could not count a queued vote for choice %s live", choice_id, exc_info=True)
    return Outcome.QUEUED


def _vote_in_database(question_id: int, choice_id: int, voter: str, slot: int | None = None) -> Outcome:
    """Count the vote in the database; ``slot`` is the queue slot it took, if any, for the flush to skip."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                DirectVote.objects.create(question_id=question_id, voter=voter_digest(voter), slot=slot)
        except IntegrityError:
            return Outcome.DUPLICATE
        Choice.objects.filter(pk=choice_id, question_id=question_id).update(votes=F("votes") + 1)
    return Outcome.DIRECT


def _database_totals(question_id: int) -> dict[int, int]:
    return dict(Choice.objects.filter(question_id=question_id).values_list("pk", "votes"))


@dataclass(frozen=True)
class Totals:
    """Live totals of a question: the database's plus the queued ones, per choice id."""

    votes: dict[int, int]
    #: False if the votes cache could not be read: the totals are the database's alone.
    live: bool

    @property
    def total(self) -> int:
        return sum(self.votes.values())


def live_totals(info: QuestionInfo) -> Totals:
    """Database totals (through the fence: a hot results page queries once) plus pending counters."""
    timeout = fence_settings().POLLS_TOTALS_TIMEOUT
    stored: dict[int, int] = fenced_cache().get_or_set(
        _totals_key(info.id), lambda: _database_totals(info.id), timeout) or {}
    keys = {pending_key(pk): pk for pk, _ in info.choices}
    try:
        with translated("polls: read the pending counters"):
            pending = votes_cache().get_many(list(keys))
    except BackendUnavailable:
        logger.warning("polls: votes cache down, showing database totals of question %s", info.id, exc_info=True)
        return Totals({pk: stored.get(pk, 0) for pk, _ in info.choices}, live=False)
    votes = {pk: stored.get(pk, 0) + int(pending.get(key, 0)) for key, pk in keys.items()}
    return Totals(votes, live=True)


def results_payload(info: QuestionInfo, totals: Totals) -> dict[str, Any]:
    """The JSON the results_json view returns."""
    return {
        "question": info.id,
        "question_text": info.question_text,
        "open": info.is_open(),
        "live": totals.live,
        "total": totals.total,
        "choices": [{"id": pk, "choice_text": text, "votes": totals.votes.get(pk, 0)} for pk, text in info.choices],
    }
