"""SortedSet, TimeSortedSet and ScheduledSet against a real redis-server, side by side with redset 0.5.1."""

from __future__ import annotations

import collections
import functools
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redset
import redset.serializers

from django_fence.streams import NamedtupleSerializer, ScheduledSet, SortedSet, TimeSortedSet
from tests.streams_support import peer_client, skewed_clock, snapshot

pytestmark = pytest.mark.timeout(60)
Point = collections.namedtuple("Point", "x y")


class RedsetClient(redis.Redis):
    """redset 0.5.1 calls redis-py 2's ``zadd(name, member, score)``; redis-py >= 3 takes a mapping.

    Only this call is adapted, so every other redset call reaches redis-py as redset wrote it.
    """

    def zadd(self, name: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if len(args) == 2 and not isinstance(args[0], dict):
            return super().zadd(name, {args[0]: args[1]})
        return super().zadd(name, *args, **kwargs)


@pytest.fixture
def peer(redis_url: str, redis_client: Any) -> Any:
    client = peer_client(redis_url, 1, RedsetClient)
    yield client
    client.flushdb()
    client.close()


def both(ours: Any, theirs: Any, call: Callable[[Any], Any]) -> Any:
    """The same call on our set and redset's: equal results (or the same exception) and equal data."""
    outcomes = []
    for target in (ours, theirs):
        try:
            outcomes.append(("value", call(target)))
        except KeyError:
            outcomes.append(("KeyError", None))
    assert outcomes[0] == outcomes[1]
    assert snapshot(ours.redis) == snapshot(theirs.redis)
    return outcomes[0][1]


SERIALIZERS: list[tuple[str, Any, Any, Callable[[random.Random], Any]]] = [
    ("default", None, None, lambda rng: f"item-{rng.randint(0, 15)}"),
    ("json", json, json, lambda rng: {"n": rng.randint(0, 15)}),
    ("namedtuple", NamedtupleSerializer(Point), redset.serializers.NamedtupleSerializer(Point),
     lambda rng: Point(rng.randint(0, 3), rng.randint(0, 3))),
]


def apply(target: Any, operation: str, item: Any, score: float, n: int) -> Any:
    """One SortedSet operation by name, on our set or on redset's."""
    if operation == "add":
        return target.add(item, score)
    if operation in ("discard", "score"):
        return getattr(target, operation)(item)
    if operation == "take":
        return target.take(n)
    if operation == "in":
        return item in target
    if operation == "len":
        return len(target)
    if operation == "clear":
        return bool(target.clear())
    return getattr(target, operation)()


@pytest.mark.parametrize(("ours_serializer", "their_serializer", "make_item"),
                         [entry[1:] for entry in SERIALIZERS], ids=[entry[0] for entry in SERIALIZERS])
def test_sorted_set_random_operations_match_redset(redis_client: Any, peer: Any, ours_serializer: Any,
                                                  their_serializer: Any, make_item: Callable[[random.Random], Any]
                                                  ) -> None:
    ours = SortedSet(redis_client, "jobs", serializer=ours_serializer)
    theirs = redset.SortedSet(peer, "jobs", serializer=their_serializer)
    rng = random.Random(7)
    operations = ["add", "add", "add", "discard", "pop", "take", "peek", "peek_score", "score", "in", "len"]
    for _ in range(250):
        item, n = make_item(rng), rng.randint(0, 4)
        score = rng.choice([rng.randint(1, 20), rng.uniform(-5, 5)])  # redset replaces a score of 0
        operation = rng.choice(operations + (["clear"] if rng.random() < 0.05 else []))
        both(ours, theirs, functools.partial(apply, operation=operation, item=item, score=score, n=n))
    assert ours.name == theirs.name == "jobs"
    assert repr(ours).replace("SortedSet", "") == repr(theirs).replace("SortedSet", "")


def test_sorted_set_scorer_and_lower_score_first(redis_client: Any, peer: Any) -> None:
    ours = SortedSet(redis_client, "s", scorer=len)
    theirs = redset.SortedSet(peer, "s", scorer=len)
    for word in ("ccc", "a", "bb", "dddd"):
        assert both(ours, theirs, lambda s, w=word: s.add(w)) == len(word)
    assert both(ours, theirs, lambda s: s.take(3)) == ["a", "bb", "ccc"]
    assert both(ours, theirs, lambda s: s.pop()) == "dddd"
    assert both(ours, theirs, lambda s: s.pop()) is None  # both raise KeyError when empty


def test_sorted_set_add_with_score_zero_scores_zero_where_redset_calls_the_scorer(redis_client: Any,
                                                                                  peer: Any) -> None:
    assert SortedSet(redis_client, "s", scorer=len).add("abc", 0) == 0
    assert redset.SortedSet(peer, "s", scorer=len).add("abc", 0) == 3  # `score or scorer(item)`


def test_take_skips_and_pop_returns_none_for_items_that_fail_to_deserialize(
        redis_client: Any, peer: Any, caplog: pytest.LogCaptureFixture) -> None:
    ours = SortedSet(redis_client, "s", serializer=json)
    theirs = redset.SortedSet(peer, "s", serializer=json)
    for client in (redis_client, peer):
        client.zadd("s", {"not json": 1, '"fine"': 2, "{broken": 3, '"last"': 4})
    with caplog.at_level(logging.ERROR):
        assert both(ours, theirs, lambda s: s.take(3)) == ["fine"]  # both log and skip the two bad ones
    assert "could not deserialize" in caplog.text
    for client in (redis_client, peer):
        client.zadd("s", {"{bad": 0})
    assert ours.pop() is None  # redset's documentation; its code raises KeyError instead
    with pytest.raises(KeyError):
        theirs.pop()
    assert ours.pop() == "last"


def test_pop_returns_an_item_that_deserializes_to_a_false_value(redis_client: Any) -> None:
    ours = SortedSet(redis_client, "s", serializer=json)
    ours.add(0, 1)
    ours.add("", 2)
    assert ours.pop() == 0
    assert ours.pop() == ""
    with pytest.raises(KeyError):
        ours.pop()


def test_time_sorted_set_is_first_in_first_out_on_the_server_clock(redis_client: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ours = TimeSortedSet(redis_client, "fifo")
    before = float(redis_client.time()[0])
    with skewed_clock(monkeypatch, 3600):
        first = ours.add("zulu")
    with skewed_clock(monkeypatch, -3600):  # a client an hour behind still queues after the first
        second = ours.add("alpha")
    third = ours.add("mike")
    assert before <= first < second < third <= time.time() + 5
    assert ours.score("alpha") == second
    assert ours.take(5) == ["zulu", "alpha", "mike"]


def test_time_sorted_set_matches_redset_with_explicit_scores_and_scorer(redis_client: Any, peer: Any) -> None:
    ours = TimeSortedSet(redis_client, "t", scorer=lambda item: 100 - len(item))
    theirs = redset.TimeSortedSet(peer, "t", scorer=lambda item: 100 - len(item))
    for item in ("a", "bb", "ccc"):
        both(ours, theirs, lambda s, i=item: s.add(i))
    both(ours, theirs, lambda s: s.add("d", 1.5))
    assert both(ours, theirs, lambda s: s.take(10)) == ["d", "ccc", "bb", "a"]


def test_scheduled_set_returns_only_due_items_like_redset(redis_client: Any, peer: Any) -> None:
    ours, theirs = ScheduledSet(redis_client, "sched"), redset.ScheduledSet(peer, "sched")
    now = time.time()
    for item, offset in (("late", 1000), ("due-1", -20), ("due-2", -10), ("later", 2000)):
        both(ours, theirs, lambda s, i=item, o=offset: s.add(i, now + o))
    assert both(ours, theirs, lambda s: s.available()) == 2
    assert both(ours, theirs, lambda s: s.peek()) == "due-1"
    assert both(ours, theirs, lambda s: s.peek(1)) == "due-2"
    assert both(ours, theirs, lambda s: s.peek(2)) is None  # KeyError on both: not due
    assert both(ours, theirs, lambda s: s.peek_score()) == pytest.approx(now - 20)
    assert both(ours, theirs, lambda s: s.take(5)) == ["due-1", "due-2"]
    assert both(ours, theirs, lambda s: s.pop()) is None  # KeyError on both
    assert both(ours, theirs, lambda s: len(s)) == 2


def test_scheduled_set_clients_with_different_clocks_agree_on_what_is_due(
        redis_url: str, redis_client: Any, peer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server_now = float(redis_client.time()[0])
    early, late = ScheduledSet(redis_client, "sched"), ScheduledSet(redis.Redis.from_url(redis_url), "sched")
    early.add("due", server_now - 30)
    early.add("not yet", server_now + 600)
    seen = []
    for client, offset in ((early, -3600), (late, 3600)):
        with skewed_clock(monkeypatch, offset):
            seen.append((client.available(), client.peek(), client.peek_score()))
    assert seen[0] == seen[1] == (1, "due", server_now - 30)
    # redset compares with each client's own clock: the same data, two answers
    theirs = redset.ScheduledSet(peer, "sched")
    theirs.add("due", server_now - 30)
    theirs.add("not yet", server_now + 600)
    with skewed_clock(monkeypatch, -3600):
        behind = theirs.available()
    with skewed_clock(monkeypatch, 3600):
        ahead = theirs.available()
    assert (behind, ahead) == (0, 2)
    late.redis.close()


def test_scheduled_set_with_an_explicit_clock_schedules_by_it(redis_client: Any) -> None:
    now = [500.0]
    sched = ScheduledSet(redis_client, "sched", clock=lambda: now[0])
    assert sched.add("first") == 500.0
    sched.add("at-600", 600)
    sched.add("at-550", 550)
    assert sched.take(5) == ["first"]
    now[0] = 575.5
    assert (sched.available(), sched.peek(), sched.peek_score()) == (1, "at-550", 550.0)
    now[0] = 600.0
    assert sched.take(5) == ["at-550", "at-600"]


BAD_SET_CALLS: list[tuple[str, Callable[[SortedSet], Any], type[Exception]]] = [
    ("add dict without serializer", lambda s: s.add({"a": 1}, 1), TypeError),
    ("add None", lambda s: s.add(None, 1), TypeError),
    ("score str", lambda s: s.add("a", "1"), TypeError),
    ("score nan", lambda s: s.add("a", float("nan")), ValueError),
    ("scorer returns str", lambda s: SortedSet(s.redis, s.name, scorer=str).add("a"), TypeError),
    ("take str", lambda s: s.take("many"), ValueError),
    ("peek position str", lambda s: s.peek("0"), TypeError),
    ("namedtuple of another class", lambda s: SortedSet(s.redis, s.name, serializer=NamedtupleSerializer(Point))
     .add(("x", "y"), 1), TypeError),
]


@pytest.mark.parametrize(("call", "error"), [(call, error) for _, call, error in BAD_SET_CALLS],
                         ids=[what for what, _, _ in BAD_SET_CALLS])
def test_set_bad_input_raises_and_writes_nothing(redis_client: Any, call: Callable[[SortedSet], Any],
                                                 error: type[Exception]) -> None:
    sorted_set = SortedSet(redis_client, "s")
    sorted_set.add("kept", 1)
    before = snapshot(redis_client)
    with pytest.raises(error):
        call(sorted_set)
    assert snapshot(redis_client) == before


def test_set_bad_constructor_arguments_raise(redis_client: Any) -> None:
    with pytest.raises(ValueError):
        SortedSet(redis_client, "")
    with pytest.raises(TypeError):
        SortedSet(redis_client, "s", scorer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SortedSet(redis_client, "s", serializer=str)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SortedSet(redis_client, "s", lock_timeout=0)
    with pytest.raises(TypeError):
        NamedtupleSerializer(tuple)
    assert SortedSet(redis_client, "s", lock_timeout=5, lock_expires=20).lock_expires == 20.0
