"""The write-behind queue: slot numbering, the drain's bookkeeping, producers across processes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import caches

from django_fence.queues import (
    EPOCH_BITS,
    QueueUnavailable,
    WriteBehindQueue,
    compress,
    drop_through,
    epoch_of,
    extend_ranges,
    first_slot,
    memcached_ttl,
    next_window,
    pointer_start,
)
from tests import servers
from tests.conftest import flush, pylibmc_client, votes_config
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(60)
NOW = 1_800_000_000.0


def test_pointer_start_is_above_every_earlier_pointer() -> None:
    earlier = pointer_start(NOW)
    later = pointer_start(NOW + 0.01)
    assert later > earlier + (1 << EPOCH_BITS) - 1  # a whole pointer lifetime fits in between
    assert first_slot(epoch_of(earlier + 1)) == earlier + 1
    assert pointer_start(NOW + 100 * 365 * 86400) < 2**63  # Redis's INCR limit


def test_extend_ranges_continues_the_same_pointer() -> None:
    start = pointer_start(NOW)
    assert extend_ranges([], 0, start + 5) == ([[start + 1, start + 5]], False)
    assert extend_ranges([[start + 1, start + 5]], 0, start + 9) == ([[start + 1, start + 9]], False)
    assert extend_ranges([], start + 5, start + 9) == ([[start + 6, start + 9]], False)
    assert extend_ranges([[start + 1, start + 5]], 0, None) == ([[start + 1, start + 5]], False)
    assert extend_ranges([], start + 5, start + 5) == ([], False)


def test_extend_ranges_ignores_a_new_pointer_that_handed_out_no_slot() -> None:
    old, new = pointer_start(NOW), pointer_start(NOW + 60)
    assert extend_ranges([[old + 1, old + 4]], 0, new) == ([[old + 1, old + 4]], False)


def test_memcached_ttl_sends_more_than_30_days_as_a_unix_time() -> None:
    assert (memcached_ttl(None), memcached_ttl(0), memcached_ttl(60)) == (0, 0, 60)
    assert memcached_ttl(30 * 24 * 3600) == 30 * 24 * 3600
    assert memcached_ttl(31 * 24 * 3600, now=NOW) == int(NOW) + 31 * 24 * 3600


def test_extend_ranges_jumps_to_a_new_pointer_and_keeps_the_old_slots() -> None:
    old, new = pointer_start(NOW), pointer_start(NOW + 60)
    ranges, stale = extend_ranges([[old + 3, old + 8]], old + 2, new + 4)
    assert (ranges, stale) == ([[old + 3, old + 8], [new + 1, new + 4]], False)


def test_extend_ranges_flags_a_pointer_behind_the_drain() -> None:
    old, new = pointer_start(NOW), pointer_start(NOW + 60)
    assert extend_ranges([[new + 1, new + 4]], old + 8, old + 9) == ([[new + 1, new + 4]], True)


def test_next_window_drop_through_and_compress() -> None:
    ranges = [[1, 3], [10, 12]]
    assert next_window(ranges, 4) == [1, 2, 3, 10]
    assert next_window(ranges, 100) == [1, 2, 3, 10, 11, 12]
    assert drop_through(ranges, 2) == [[3, 3], [10, 12]]
    assert drop_through(ranges, 10) == [[11, 12]]
    assert compress([5, 1, 2, 3, 9, 10]) == [[1, 3], [5, 5], [9, 10]]


@pytest.fixture(params=["raw_pylibmc", "pylibmc", "locmem"])
def queue(request: pytest.FixtureRequest, settings: Any) -> WriteBehindQueue:
    prefix = f"q{uuid.uuid4().hex[:8]}"
    clock = lambda: NOW  # noqa: E731
    if request.param == "locmem":
        return WriteBehindQueue(caches["votes"], prefix, clock=clock)
    location = request.getfixturevalue("memcached_location")
    flush("pylibmc", location)
    if request.param == "raw_pylibmc":
        return WriteBehindQueue(pylibmc_client(location), prefix, clock=clock)
    settings.CACHES = {**settings.CACHES, "votes": votes_config("pylibmc", location)}
    return WriteBehindQueue(caches["votes"], prefix, clock=clock)


def test_enqueue_never_overwrites_a_queued_slot_when_the_pointer_went_back(queue: WriteBehindQueue) -> None:
    numbers = [queue.enqueue(f"message {i}") for i in range(3)]
    queue.client.set(queue.pointer_key, numbers[0])  # a server rejoined with an old pointer
    taken = queue.enqueue("late")
    assert taken == numbers[-1] + 1
    assert queue.read([*numbers, taken]) == {numbers[0]: "message 0", numbers[1]: "message 1",
                                            numbers[2]: "message 2", taken: "late"}


def test_reset_pointer_moves_it_past_every_slot_handed_out(queue: WriteBehindQueue) -> None:
    numbers = [queue.enqueue(f"message {i}") for i in range(3)]
    assert queue.reset_pointer(numbers[0], numbers[-1]) == (epoch_of(numbers[-1]) + 1) << EPOCH_BITS
    assert queue.enqueue("next") == first_slot(epoch_of(numbers[-1]) + 1)  # the same clock: no number reused


def test_enqueue_takes_consecutive_slots_from_a_new_pointer(queue: WriteBehindQueue) -> None:
    assert queue.pointer() is None
    numbers = [queue.enqueue(f"message {i}") for i in range(5)]
    start = pointer_start(NOW)
    assert numbers == list(range(start + 1, start + 6))
    assert queue.pointer() == start + 5
    assert queue.read([*numbers, start + 6]) == {**{n: f"message {i}" for i, n in enumerate(numbers)},
                                                 start + 6: None}
    queue.discard(numbers[:2])
    assert list(queue.read(numbers).values()) == [None, None, "message 2", "message 3", "message 4"]


@pytest.mark.parametrize(("message", "error"), [(b"bytes", TypeError), (None, TypeError), ("", ValueError),
                                                ("x" * 1_000_001, ValueError)])
def test_enqueue_bad_message_raises_and_takes_no_slot(queue: WriteBehindQueue, message: Any,
                                                      error: type[Exception]) -> None:
    with pytest.raises(error, match="message"):
        queue.enqueue(message)
    assert queue.pointer() is None


@pytest.mark.parametrize(("kwargs", "error"), [({"prefix": "has space"}, ValueError), ({"prefix": ""}, ValueError),
                                               ({"slot_ttl": 0}, ValueError), ({"client": object()}, TypeError)])
def test_queue_bad_arguments_raise(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        WriteBehindQueue(**{"client": caches["votes"], "prefix": "ok", **kwargs})


def test_enqueue_raises_queue_unavailable_when_memcached_is_down() -> None:
    queue = WriteBehindQueue(pylibmc_client(f"127.0.0.1:{servers.free_port()}"), "down")
    with pytest.raises(QueueUnavailable) as info:
        queue.enqueue("vote")
    assert info.value.slot is None


def test_enqueue_from_many_processes_hands_out_each_slot_once(memcached_location: str) -> None:
    """No lock: 4 processes x 300 enqueues get 1200 distinct, consecutive slots, each holding its message."""
    flush("pylibmc", memcached_location)
    config = votes_config("pylibmc", memcached_location)
    results = run_in_processes(4, "enqueue_many", {"votes": config, "default": config}, times=300)
    numbers = sorted(n for r in results for n in r["slots"])
    assert numbers == list(range(numbers[0], numbers[0] + 1200))
    client = pylibmc_client(memcached_location)
    messages = client.get_multi([f":1:polls-votes-key-{n}" for n in numbers])
    assert sorted(messages.values()) == sorted(m for r in results for m in r["messages"])
