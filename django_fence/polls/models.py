"""Questions, choices, and the queue cursor the flush commits together with the totals."""

from __future__ import annotations

import datetime

from django.db import models
from django.utils import timezone


class Question(models.Model):
    """A multiple-choice question; votes are refused once ``closes_at`` has passed."""

    question_text = models.CharField(max_length=200)
    pub_date = models.DateTimeField("date published", default=timezone.now)
    closes_at = models.DateTimeField("closes at", null=True, blank=True,
                                     help_text="Leave empty to keep the question open.")

    class Meta:
        ordering = ["-pub_date"]

    def __str__(self) -> str:
        return self.question_text

    def is_open(self, now: datetime.datetime | None = None) -> bool:
        """Whether votes are still accepted."""
        return self.closes_at is None or (now or timezone.now()) < self.closes_at


class Choice(models.Model):
    """One answer. ``votes`` holds what the flush (or a direct vote) has written; queued votes come on top."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="choices")
    choice_text = models.CharField(max_length=200)
    votes = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.choice_text


class DirectVote(models.Model):
    """A voter who voted while the votes cache was down: the database enforces one vote per question.

    ``voter`` is the sha256 hex digest of the voter's identity (never a raw
    session key). ``slot`` is the queue slot the vote had taken before writing
    it failed: the flush resolves that slot without applying it.
    """

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="direct_votes")
    voter = models.CharField(max_length=64)
    slot = models.BigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["question", "voter"], name="polls_one_direct_vote")]

    def __str__(self) -> str:
        return f"{self.voter} on question {self.question_id}"


class QueueCursor(models.Model):
    """How far the database has applied one vote queue, written in the same transaction as the totals.

    ``version`` increases with every commit; a flush writes only if the version
    is still the one it read, so two flushes never apply the same slots.
    """

    prefix = models.CharField(max_length=150, unique=True)
    version = models.BigIntegerField(default=0)
    #: The last slot resolved (applied, or reported lost).
    position = models.BigIntegerField(default=0)
    #: Slots known to be taken and not yet resolved, as ascending [first, last] pairs.
    ranges = models.JSONField(default=list)
    #: The first slot found empty, when, and the last slot taken then: after the grace, empty slots
    #: up to ``stalled_top`` are reported lost.
    stalled_slot = models.BigIntegerField(null=True, blank=True)
    stalled_top = models.BigIntegerField(null=True, blank=True)
    stalled_since = models.DateTimeField(null=True, blank=True)
    #: Votes per choice id of each committed batch (by version) not yet taken out of the pending counters.
    unsettled = models.JSONField(default=dict, blank=True)
    applied = models.BigIntegerField("votes applied", default=0)
    lost = models.BigIntegerField("slots lost", default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.prefix} at slot {self.position}"
