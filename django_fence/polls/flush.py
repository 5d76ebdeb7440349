"""Draining the vote queue into ``Choice.votes``, exactly once.

Each batch reads the slots past the database's cursor and commits, in ONE
transaction, the ``F()`` increments of the totals and the cursor's new
position. The cursor's row is updated first and only if its ``version`` is
still the one this flush read, so:

- a flush killed at any instant has either committed a batch (totals and
  position) or not (neither); a rerun starts where the database says;
- two flushes at once never apply the same slots: the second one's
  conditional UPDATE waits for the first's row lock (PostgreSQL) or write lock
  (SQLite), then matches no row, rolls back and re-reads the cursor.

The same transaction stores the batch's votes per choice in the cursor
(``unsettled``). Only after the commit are the drained slots deleted and the
pending counters decremented, under one ``add`` marker per batch; a crash in
between leaves slots that the cursor has passed (they expire) and a batch the
next run settles, exactly once. :func:`rebuild_live_totals` resets the pending
counters when they drifted anyway (memcached restarted, slots lost).

An empty slot stops the drain: its producer may still be writing it. It is
retried on the next run, and once it has been empty for the grace period it
and every other empty slot taken by then are reported lost.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from django.db import transaction
from django.db.models import F

from django_fence.conf import fence_settings
from django_fence.exceptions import BackendUnavailable, translated
from django_fence.queues import (
    EPOCH_BITS,
    QueueUnavailable,
    Range,
    WriteBehindQueue,
    compress,
    drop_through,
    epoch_of,
    extend_ranges,
    next_window,
)

from .models import Choice, DirectVote, QueueCursor
from .services import SETTLED_TTL, forget_totals, pending_key, settle_pending, vote_queue, votes_cache

logger = logging.getLogger(__name__)


SummaryLevel = Literal["success", "info", "warning", "error"]  # as django.contrib.messages names them


class Conflict(Exception):
    """Another flush committed first; re-read the cursor."""


@dataclass
class FlushReport:
    """What one run of the flush did."""

    dry_run: bool = False
    votes: int = 0
    questions: set[int] = field(default_factory=set)
    lost: list[int] = field(default_factory=list)
    malformed: int = 0
    orphaned: int = 0  # votes for choices deleted since
    batches: int = 0
    conflicts: int = 0
    waiting_on: int | None = None  # an empty slot still within its grace period
    stale_pointer: int | None = None
    #: Why the pointer could not be read (the known slots were drained anyway), or None.
    pointer_error: str | None = None
    #: Slots of an old numbering (before a pointer loss) found by probing, and where probing stopped.
    probed: int = 0
    probe_stopped_at: int | None = None
    #: Slots whose vote was written to the database after their queue write failed: resolved, not applied.
    direct: int = 0
    seconds: float = 0.0

    @property
    def lost_ranges(self) -> list[Range]:
        return compress(self.lost)

    def lines(self) -> list[tuple[SummaryLevel, str]]:
        """The summary as (level, text) pairs: what ``flush_vote_queue`` prints, for the admin's messages too."""
        verb = "Would apply" if self.dry_run else "Applied"
        lines: list[tuple[SummaryLevel, str]] = [(
            "info" if self.dry_run else "success",
            f"{verb} {self.votes} vote(s) to {len(self.questions)} question(s) in {self.seconds:.2f}s; "
            f"lost slots: {len(self.lost)}.")]
        if self.lost:
            runs = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.lost_ranges)
            lines.append(("error", f"Lost slots (empty past the grace period): {runs}"))
        if self.waiting_on is not None:
            lines.append(("info", f"Waiting on slot {self.waiting_on}: taken but not written yet; the next run "
                                  "retries it."))
        if self.malformed:
            lines.append(("warning", f"Skipped {self.malformed} slot(s) that held no vote."))
        if self.orphaned:
            lines.append(("warning", f"Dropped {self.orphaned} vote(s) for choices that no longer exist."))
        if self.probe_stopped_at is not None:
            lines.append(("error", f"The queue pointer was lost: probed {self.probed} vote(s) of the old numbering, "
                                   f"up to slot {self.probe_stopped_at}; votes queued past it, if any, cannot be "
                                   "counted."))
        if self.direct:
            lines.append(("info", f"Resolved {self.direct} slot(s) whose vote went to the database instead."))
        if self.stale_pointer is not None:
            lines.append(("warning", f"The queue pointer ({self.stale_pointer}) was behind the database; it was "
                                     "reset."))
        if self.conflicts:
            lines.append(("info", f"Another flush committed first {self.conflicts} time(s); its batches were skipped."))
        return lines


@dataclass
class _State:
    version: int
    position: int
    ranges: list[Range]
    stalled_slot: int | None
    stalled_top: int | None
    stalled_since: float | None
    unsettled: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, cursor: QueueCursor) -> _State:
        since = cursor.stalled_since.timestamp() if cursor.stalled_since else None
        return cls(cursor.version, cursor.position, [list(r) for r in cursor.ranges], cursor.stalled_slot,
                   cursor.stalled_top, since, dict(cursor.unsettled))


@dataclass
class _Batch:
    state: _State
    resolved: list[int]
    lost: list[int]
    votes: Counter[tuple[int, int]]
    malformed: int
    stopped_at: int | None
    new_stall: bool
    direct: int = 0


def parse_message(message: str) -> tuple[int, int] | None:
    """``"<question id>:<choice id>"`` as ints, or None if the slot holds something else."""
    question, sep, choice = message.partition(":")
    if not sep or not question.isdigit() or not choice.isdigit():
        return None
    return int(question), int(choice)


def _drain_batch(queue: WriteBehindQueue, state: _State, size: int, grace: float, now: float,
                 may_lose: bool = True) -> _Batch:
    window = next_window(state.ranges, size)
    messages = queue.read(window)
    # A producer whose slot write failed voted in the database instead, naming the slot: resolve it
    # without applying it (its write may have been stored anyway) and without reporting it lost.
    direct = set(DirectVote.objects.filter(slot__in=window).values_list("slot", flat=True)) if window else set()
    resolved: list[int] = []
    lost: list[int] = []
    votes: Counter[tuple[int, int]] = Counter()
    malformed = direct_count = 0
    stopped_at = None
    # Without a readable pointer, only declare losses if the cache answered at all (not a whole outage).
    may_lose = may_lose or any(message is not None for message in messages.values())
    overdue = may_lose and state.stalled_since is not None and now - state.stalled_since >= grace
    for number in window:
        message = messages[number]
        if number in direct:
            direct_count += 1
        elif message is not None:
            parsed = parse_message(message)
            if parsed is None:
                malformed += 1
            else:
                votes[parsed] += 1
        elif overdue and state.stalled_top is not None and number <= state.stalled_top:
            lost.append(number)
        else:
            stopped_at = number
            break
        resolved.append(number)
    position = resolved[-1] if resolved else state.position
    ranges = drop_through(state.ranges, position)
    new = _State(state.version + 1, position, ranges, state.stalled_slot, state.stalled_top, state.stalled_since,
                 dict(state.unsettled))
    per_choice: Counter[int] = Counter()
    for (_, choice_id), count in votes.items():
        per_choice[choice_id] += count
    if per_choice:  # committed with the totals, settled after the commit (and by a rerun if killed first)
        new.unsettled[str(new.version)] = {str(choice_id): count for choice_id, count in per_choice.items()}
    new_stall = False
    if stopped_at is not None and (state.stalled_top is None or stopped_at > state.stalled_top):
        new.stalled_slot, new.stalled_top, new.stalled_since = stopped_at, ranges[-1][1], now
        new_stall = True
    elif stopped_at is None and state.stalled_top is not None and position >= state.stalled_top:
        new.stalled_slot = new.stalled_top = new.stalled_since = None
    return _Batch(new, resolved, lost, votes, malformed, stopped_at, new_stall, direct_count)


def _aware(timestamp: float | None) -> datetime.datetime | None:
    return None if timestamp is None else datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def _commit(prefix: str, before: _State, batch: _Batch) -> int:
    """Write the batch's totals and the cursor in one transaction; return the orphaned votes."""
    after = batch.state
    orphaned = 0
    with transaction.atomic():
        if before.version == 0:  # created by the first commit, so a dry run writes nothing
            QueueCursor.objects.get_or_create(prefix=prefix)
        # The cursor first: on SQLite this takes the write lock before anything else is read.
        moved = QueueCursor.objects.filter(prefix=prefix, version=before.version).update(
            version=after.version, position=after.position, ranges=after.ranges,
            stalled_slot=after.stalled_slot, stalled_top=after.stalled_top,
            stalled_since=_aware(after.stalled_since), updated_at=_aware(time.time()), unsettled=after.unsettled,
            applied=F("applied") + sum(batch.votes.values()), lost=F("lost") + len(batch.lost),
        )  # fmt: skip
        if moved != 1:
            raise Conflict(prefix)
        for (question_id, choice_id), count in sorted(batch.votes.items()):
            updated = Choice.objects.filter(pk=choice_id, question_id=question_id).update(votes=F("votes") + count)
            orphaned += count if updated == 0 else 0
    return orphaned


def _after_commit(queue: WriteBehindQueue, batch: _Batch, touched: set[int]) -> None:
    """Delete the drained slots, settle the pending counters, drop cached totals."""
    queue.discard(batch.resolved)
    _settle(queue.prefix, batch.state, touched)
    for question_id in sorted({question_id for question_id, _ in batch.votes}):
        forget_totals(question_id)


def _settle(prefix: str, state: _State, touched: set[int]) -> None:
    for version in settle_pending(prefix, state.unsettled):
        touched.update(int(choice) for choice in state.unsettled.pop(version))


def _zero_at_rest(queue: WriteBehindQueue, state: _State, touched: set[int]) -> None:
    """Every taken slot is resolved and every batch settled: the touched choices have no pending vote.

    Setting their counters to 0 repairs a settle that died between its marker
    and its decrement. The pointer is read after the drain: a slot taken since
    keeps the counters as they are (a vote counted in between is at worst
    missing from the live total until it is flushed).
    """
    try:
        if queue.pointer() != state.position:
            return
        with translated("polls: zero the pending counters at rest"):
            votes_cache().set_many({pending_key(choice): 0 for choice in sorted(touched)}, timeout=None)
    except BackendUnavailable:
        logger.warning("flush: could not zero the pending counters at rest", exc_info=True)


def flush_votes(batch_size: int = 1000, dry_run: bool = False, grace: float | None = None,
                clock: Callable[[], float] = time.time, should_stop: Callable[[], bool] = lambda: False,
                progress: Callable[[int, int], None] | None = None) -> FlushReport:
    """Apply every readable queued vote once; see the module docstring. ``--dry-run`` writes nothing.

    If the queue's pointer cannot be read, the slots already known are drained
    (none is reported lost in that run) and ``report.pointer_error`` says why.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    grace = fence_settings().POLLS_SLOT_GRACE if grace is None else grace
    if grace < 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace!r}.")
    queue = vote_queue()
    report = FlushReport(dry_run=dry_run)
    began = time.monotonic()
    state: _State | None = None
    stored_unsettled: dict[str, dict[str, int]] = {}  # what the cursor row holds
    touched: set[int] = set()  # choices whose pending counters this run settled
    known = done = 0
    while not should_stop():
        if state is None:
            state = _load(queue, report, dry_run, batch_size)
            stored_unsettled = dict(state.unsettled)
            if not dry_run:
                _settle(queue.prefix, state, touched)  # batches of a flush killed between commit and cleanup
            known = sum(last - first + 1 for first, last in state.ranges) + done
        if not state.ranges:
            break
        batch = _drain_batch(queue, state, batch_size, grace, clock(), may_lose=report.pointer_error is None)
        if not dry_run:
            try:
                report.orphaned += _commit(queue.prefix, state, batch)
            except Conflict:
                report.conflicts += 1
                state = None
                continue
            stored_unsettled = dict(batch.state.unsettled)
            _after_commit(queue, batch, touched)
        state = batch.state
        report.batches += 1
        report.votes += sum(batch.votes.values())
        report.questions.update(question_id for question_id, _ in batch.votes)
        report.lost += batch.lost
        report.malformed += batch.malformed
        report.direct += batch.direct
        done += len(batch.resolved)
        if progress is not None:
            progress(done, known)
        if batch.stopped_at is not None and not (batch.new_stall and grace == 0):
            report.waiting_on = batch.stopped_at
            break
    if state is not None and not dry_run and state.unsettled != stored_unsettled:
        # Forget settled batches now rather than on the next commit; the markers keep this idempotent.
        QueueCursor.objects.filter(prefix=queue.prefix, version=state.version).update(unsettled=state.unsettled)
    if (state is not None and not dry_run and touched and not state.ranges and not state.unsettled
            and report.pointer_error is None):
        _zero_at_rest(queue, state, touched)
    if report.lost:
        logger.error("flush: %d queue slots were lost (empty past their grace): %s", len(report.lost),
                     report.lost_ranges)
    report.seconds = time.monotonic() - began
    return report


def _load(queue: WriteBehindQueue, report: FlushReport, dry_run: bool, window: int) -> _State:
    """The cursor as the database has it, extended by what the queue's pointer says was taken.

    When the pointer is gone or starts a new numbering (memcached restarted,
    its server left the pool, an epoch boundary was crossed), slots of the old
    numbering past the last one known may still hold votes: they are probed
    forward from there, one window at a time, until a whole window is empty.
    """
    cursor = QueueCursor.objects.filter(prefix=queue.prefix).first() or QueueCursor(prefix=queue.prefix)
    state = _State.of(cursor)
    try:
        pointer = queue.pointer()
    except QueueUnavailable as exc:
        logger.error("flush: the queue pointer cannot be read (%s); draining the %d slot range(s) already known",
                     exc, len(state.ranges))
        report.pointer_error = str(exc)
        pointer = None
    top = state.ranges[-1][1] if state.ranges else state.position
    if pointer is None or (pointer > top and epoch_of(pointer) != epoch_of(top + 1)):
        found = _probe(queue, top, window, report)
        if found > top and state.ranges:
            state.ranges[-1][1] = found
        elif found > top:
            state.ranges = [[top + 1, found]]
        elif not state.ranges and top > 0 and not dry_run and report.pointer_error is None:
            _close_numbering(queue, state, pointer)
    ranges, stale = extend_ranges(state.ranges, state.position, pointer)
    if stale and pointer is not None:
        report.stale_pointer = pointer
        if not dry_run:
            queue.reset_pointer(pointer, ranges[-1][1] if ranges else state.position)
    state.ranges = ranges
    return state


def _close_numbering(queue: WriteBehindQueue, state: _State, pointer: int | None) -> None:
    """Nothing is pending and the old numbering was probed empty: move the cursor to the new numbering's start.

    Without this, every run would probe (and report) the old numbering again
    until a producer takes a slot of the new one. A missing pointer is
    created, as the next producer would create it.
    """
    if pointer is None:
        pointer = queue.ensure_pointer()
    start = epoch_of(pointer) << EPOCH_BITS  # the value the new pointer was created with: none of its slots
    if start <= state.position or state.version == 0:
        return
    moved = QueueCursor.objects.filter(prefix=queue.prefix, version=state.version).update(
        version=state.version + 1, position=start, updated_at=_aware(time.time()))
    if moved == 1:
        state.version, state.position = state.version + 1, start


def _probe(queue: WriteBehindQueue, top: int, window: int, report: FlushReport) -> int:
    """The last non-empty slot after ``top`` in ``top``'s numbering, reading until a window is empty."""
    last = top
    start = top + 1
    limit = (epoch_of(top) + 1) << EPOCH_BITS  # the old numbering ends where the next epoch begins
    while start <= limit:
        numbers = list(range(start, min(start + window, limit + 1)))
        found = [n for n, message in queue.read(numbers).items() if message is not None]
        if not found:
            break
        report.probed += len(found)
        last = max(found)
        start = numbers[-1] + 1
    if top > 0:  # there was an old numbering: what followed its last known slot may be gone unseen
        report.probe_stopped_at = last
        logger.error("flush: queue %s lost its pointer or started a new numbering after slot %d; probed the old "
                     "numbering up to slot %d: votes queued past it, if any, cannot be counted", queue.prefix,
                     top, last)
    return last


def rebuild_live_totals(batch_size: int = 1000) -> dict[int, int]:
    """Set every choice's pending counter to the votes its queued, unapplied slots hold; return them.

    For when the live totals drifted from the database: memcached restarted (the
    counters and the settled markers went with it), a slot was evicted or lost
    (its vote stays pending), a settle failed. Committed batches are marked
    settled first, so no flush decrements them afterwards. A vote queued while
    this runs may be missed by the live total until the next rebuild (the
    database totals are never affected): run it when votes are quiet.
    """
    queue = vote_queue()
    cursor = QueueCursor.objects.filter(prefix=queue.prefix).first() or QueueCursor(prefix=queue.prefix)
    cache = votes_cache()
    with translated("polls: mark committed batches settled"):
        for version in cursor.unsettled:
            cache.add(f"{queue.prefix}-settled-{version}", 1, timeout=SETTLED_TTL)
    if cursor.pk is not None:
        QueueCursor.objects.filter(pk=cursor.pk, version=cursor.version).update(unsettled={})
    ranges, _ = extend_ranges(cursor.ranges, cursor.position, queue.pointer())
    counts: Counter[int] = Counter()
    while ranges:
        window = next_window(ranges, batch_size)
        direct = set(DirectVote.objects.filter(slot__in=window).values_list("slot", flat=True))
        for number, message in queue.read(window).items():
            parsed = parse_message(message) if message is not None and number not in direct else None
            if parsed is not None:
                counts[parsed[1]] += 1
        ranges = drop_through(ranges, window[-1])
    choices = dict(Choice.objects.values_list("pk", "question_id"))
    with translated("polls: set the pending counters"):
        cache.set_many({pending_key(pk): counts[pk] for pk in choices}, timeout=None)
    for question_id in sorted(set(choices.values())):
        forget_totals(question_id)
    return {pk: counts[pk] for pk in choices}
