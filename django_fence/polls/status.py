"""The vote queue at a glance, for the admin dashboard: how much waits, how old the last flush is, what was lost.

:func:`queue_status` reads the queue's pointer once and the cursor's row
once, and writes nothing: no pointer is created (``WriteBehindQueue.pointer``
is a plain get) and no cursor row either, so a dashboard refreshing it every
few seconds never changes what the next flush finds. memcached being down is
part of the answer (``error``), never an exception.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django_fence.queues import QueueUnavailable, epoch_of, extend_ranges

from .models import QueueCursor
from .services import vote_queue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueStatus:
    """The vote queue's state as the database's cursor and the queue's pointer show it."""

    #: The queue's key prefix (``DJANGO_FENCE["POLLS_QUEUE_PREFIX"]``).
    prefix: str
    #: Slots taken and not yet applied or resolved; None when the pointer could not be read. A lower
    #: bound when ``numbering_changed``: slots of the old numbering past the cursor are only found by
    #: the next flush, which probes for them.
    depth: int | None
    #: The last slot handed out; None if there is no pointer (never used, or lost) or it could not be read.
    pointer: int | None
    #: The last slot the flush resolved (applied, or declared lost); 0 before the first flush.
    position: int
    #: Votes the flush has applied, and slots it declared lost, since the cursor was created.
    applied: int
    lost: int
    #: When a flush last committed; None if none ever did.
    last_flush: datetime.datetime | None
    #: 0.0 when nothing waits; else seconds since the last flush commit (None if never flushed).
    lag_seconds: float | None
    #: The empty slot the drain is waiting on (its producer may still write it), or None.
    stalled_slot: int | None
    #: The pointer is gone or numbers its slots in a later epoch than the cursor's last known slot
    #: (memcached restarted, the pointer's server left the pool, 2**24 slots were used up).
    numbering_changed: bool
    #: ``"QueueUnavailable: ..."`` when memcached could not be reached (the database fields are still set).
    error: str | None


def queue_status(clock: Callable[[], float] = time.time) -> QueueStatus:
    """The vote queue's status: one pointer read, one database query, no write; never raises on memcached down."""
    queue = vote_queue()
    cursor = QueueCursor.objects.filter(prefix=queue.prefix).first()
    position = cursor.position if cursor is not None else 0
    known = [list(r) for r in cursor.ranges] if cursor is not None else []
    error = None
    try:
        pointer = queue.pointer()
    except QueueUnavailable as exc:
        logger.warning("queue status: the pointer of %s cannot be read", queue.prefix, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"
        pointer = None
    depth: int | None = None
    numbering_changed = False
    if error is None:
        top = known[-1][1] if known else position
        # The flush's own test for probing (flush._load): a new numbering starts past the old one's slots.
        numbering_changed = top > 0 and (pointer is None or (pointer > top and epoch_of(pointer) != epoch_of(top + 1)))
        ranges, _ = extend_ranges(known, position, pointer)
        depth = sum(last - first + 1 for first, last in ranges)
    last_flush = cursor.updated_at if cursor is not None else None
    if depth == 0:
        lag: float | None = 0.0
    elif last_flush is None:
        lag = None
    else:  # never negative: the commit's time comes from whichever host flushed
        lag = max(0.0, clock() - last_flush.timestamp())
    return QueueStatus(
        prefix=queue.prefix, depth=depth, pointer=pointer, position=position,
        applied=cursor.applied if cursor is not None else 0, lost=cursor.lost if cursor is not None else 0,
        last_flush=last_flush, lag_seconds=lag, stalled_slot=cursor.stalled_slot if cursor is not None else None,
        numbering_changed=numbering_changed, error=error,
    )  # fmt: skip
