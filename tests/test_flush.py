"""flush_vote_queue: exactly once, through kills, overlapping runs, restarts and lost servers."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError

from django_fence.polls.flush import flush_votes, rebuild_live_totals
from django_fence.polls.models import Choice, Question, QueueCursor
from django_fence.polls.services import cast_vote, counters, live_totals, pending_key, question_info, vote_queue
from django_fence.queues import EPOCH_BITS, epoch_of
from tests import servers
from tests.conftest import fenced_caches, flush, pylibmc_client, votes_config

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("drain_fence_stats")]
ROOT = Path(__file__).resolve().parent.parent
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "flush-backing"}


def poll_caches(votes_location: str | list[str]) -> dict[str, Any]:
    location = votes_location if isinstance(votes_location, str) else ";".join(votes_location)
    return {**fenced_caches(LOCMEM), "votes": votes_config("pylibmc", location)}


@pytest.fixture
def poll(settings: Any, memcached_location: str, db: Any) -> Iterator[Question]:
    """A question with three choices; the votes alias on the suite's memcached, flushed."""
    flush("pylibmc", memcached_location)
    settings.CACHES = poll_caches(memcached_location)
    question = Question.objects.create(question_text="Which one?")
    for i in range(3):
        question.choices.create(choice_text=f"choice {i}")
    yield question
    caches["votes"].close()


def vote(question: Question, count: int, voter: str = "v") -> list[int]:
    """Cast ``count`` queued votes round-robin over the choices; return the votes per choice."""
    info = question_info(question.pk)
    assert info is not None
    per_choice = [0] * len(info.choices)
    for i in range(count):
        assert cast_vote(info, info.choices[i % 3][0], f"{voter}-{uuid.uuid4().hex}").value == "queued"
        per_choice[i % 3] += 1
    return per_choice


def wait_until_reachable(deadline: float = 10.0) -> None:
    """pylibmc marks a server that failed as down for retry_timeout (1 s): wait until it is back."""
    until = time.monotonic() + deadline
    while True:
        try:
            caches["votes"].get("ping")
            return
        except Exception:
            if time.monotonic() > until:
                raise
            time.sleep(0.05)


def totals(question: Question) -> list[int]:
    return list(Choice.objects.filter(question=question).order_by("pk").values_list("votes", flat=True))


def test_flush_applies_every_vote_once_and_cleans_up(poll: Question) -> None:
    cast = vote(poll, 10)
    report = flush_votes(batch_size=3)
    assert (report.votes, report.questions, report.lost, report.batches) == (10, {poll.pk}, [], 4)
    assert totals(poll) == cast == [4, 3, 3]
    assert [counters().get_count(pending_key(pk)) for pk in poll.choices.values_list("pk", flat=True)] == [0, 0, 0]
    pointer = vote_queue().pointer()
    assert pointer is not None
    assert vote_queue().read(list(range(pointer - 9, pointer + 1))) == dict.fromkeys(range(pointer - 9, pointer + 1))
    cursor = QueueCursor.objects.get()
    assert (cursor.position, cursor.ranges, cursor.applied, cursor.lost) == (pointer, [], 10, 0)
    again = flush_votes()
    assert (again.votes, again.batches) == (0, 0)
    assert totals(poll) == cast


def test_flush_dry_run_writes_nothing(poll: Question) -> None:
    vote(poll, 5)
    out = io.StringIO()
    call_command("flush_vote_queue", "--dry-run", stdout=out)
    assert out.getvalue().startswith("Would apply 5 vote(s) to 1 question(s) in ")
    assert out.getvalue().endswith("s; lost slots: 0.\n")
    assert totals(poll) == [0, 0, 0]
    assert not QueueCursor.objects.exists()
    assert flush_votes().votes == 5


def test_flush_command_prints_a_summary(poll: Question) -> None:
    vote(poll, 4)
    out = io.StringIO()
    call_command("flush_vote_queue", "--batch-size", "2", stdout=out)
    first, seconds = out.getvalue().split(" in ")
    assert first == "Applied 4 vote(s) to 1 question(s)"
    assert seconds.endswith("s; lost slots: 0.\n") and float(seconds.split("s;")[0]) >= 0
    silent = io.StringIO()
    call_command("flush_vote_queue", verbosity=0, stdout=silent)
    assert silent.getvalue() == ""


@pytest.mark.parametrize("batch_size", ["0", "-3"])
def test_flush_command_bad_batch_size_is_an_error(poll: Question, batch_size: str) -> None:
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("flush_vote_queue", "--batch-size", batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        flush_votes(batch_size=int(batch_size))


def test_flush_command_exits_2_when_the_queue_is_unreachable(poll: Question, settings: Any) -> None:
    settings.CACHES = poll_caches(f"127.0.0.1:{servers.free_port()}")
    with pytest.raises(CommandError, match="Vote queue unreachable") as info:
        call_command("flush_vote_queue")
    assert info.value.returncode == 2


def test_flush_stops_at_a_slot_being_written_and_resumes(poll: Question) -> None:
    """A producer took a slot and has not written it yet: the drain waits for it, and loses nothing."""
    queue = vote_queue()
    before = vote(poll, 2)
    taken = int(caches["votes"].incr(queue.pointer_key))  # a producer between its incr and its set
    vote(poll, 3)
    clock = itertools.count(1_000_000.0, 1.0)
    first = flush_votes(grace=10, clock=lambda: next(clock))
    assert (first.votes, first.waiting_on, first.lost) == (2, taken, [])
    assert totals(poll) == before
    caches["votes"].set(queue.slot_key(taken), f"{poll.pk}:{poll.choices.first().pk}")  # type: ignore[union-attr]
    second = flush_votes(grace=10, clock=lambda: next(clock))
    assert (second.votes, second.waiting_on, second.lost) == (4, None, [])
    assert sum(totals(poll)) == 6


def test_flush_reports_a_slot_lost_after_the_grace_period(poll: Question) -> None:
    queue = vote_queue()
    vote(poll, 2)
    taken = int(caches["votes"].incr(queue.pointer_key))  # a producer that died before writing
    vote(poll, 3)
    now = [1_000_000.0]
    first = flush_votes(grace=10, clock=lambda: now[0])
    now[0] += 9.9
    within = flush_votes(grace=10, clock=lambda: now[0])
    assert (first.votes, within.votes, within.lost, within.waiting_on) == (2, 0, [], taken)
    now[0] += 0.1
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 queue slot") as exit_info:
        with_clock(lambda: now[0], out)
    assert exit_info.value.returncode == 3
    assert f"Lost slots (empty past the grace period): {taken}\n" in out.getvalue()
    assert sum(totals(poll)) == 5
    assert QueueCursor.objects.get().lost == 1


def with_clock(clock: Any, out: io.StringIO) -> None:
    """Run the command with the flush's clock replaced (the command itself takes none)."""
    from django_fence.polls import flush as flush_module

    original = flush_module.flush_votes

    def patched(**kwargs: Any) -> Any:
        return original(grace=10, clock=clock, **kwargs)

    flush_module_cmd = sys.modules["django_fence.polls.management.commands.flush_vote_queue"]
    flush_module_cmd.flush_votes = patched  # type: ignore[attr-defined]
    try:
        call_command("flush_vote_queue", stdout=out)
    finally:
        flush_module_cmd.flush_votes = original  # type: ignore[attr-defined]


def test_flush_after_memcached_restart_reports_lost_slots_and_applies_the_rest(
        poll: Question, memcached_server: servers.Server, settings: Any) -> None:
    """PITFALLS 20: restart mid-spike. Lost slots are named, readable ones applied once, totals rebuilt."""
    settings.CACHES = poll_caches(memcached_server.url)
    vote(poll, 30)
    partial = flush_votes(batch_size=10, should_stop=iter([False, True]).__next__)
    assert partial.votes == 10
    old_ranges = QueueCursor.objects.get().ranges
    assert [last - first + 1 for first, last in old_ranges] == [20]
    memcached_server.restart()
    wait_until_reachable()
    after = vote(poll, 9, voter="after")
    report = flush_votes(grace=0)
    first, last = old_ranges[0]
    assert report.lost == list(range(first, last + 1))
    assert report.votes == 9
    assert sum(totals(poll)) == 10 + 9
    assert totals(poll) == [a + b for a, b in zip([4, 3, 3], after, strict=True)]
    live = caches["default"]  # the live totals: database + counters recreated after the restart (all flushed)
    live.clear()
    info = question_info(poll.pk)
    assert info is not None
    from django_fence.polls.services import live_totals

    assert list(live_totals(info).votes.values()) == totals(poll)
    assert flush_votes(grace=0).votes == 0


@pytest.mark.parametrize("victim_holds_pointer", [False, True])
def test_flush_with_one_of_three_memcached_servers_killed_loses_only_its_slots(
        settings: Any, db: Any, victim_holds_pointer: bool) -> None:
    """Consistent hashing: the slots on the killed server are reported lost, every other is applied.

    Also when the killed server held the pointer: the slots known from the
    cursor and found by probing are drained without it.
    """
    pool = [servers.start_memcached() for _ in range(3)]
    try:
        settings.CACHES = poll_caches([s.url for s in pool])
        question = Question.objects.create(question_text="Pool?")
        for i in range(3):
            question.choices.create(choice_text=f"choice {i}")
        vote(question, 3)
        assert flush_votes().votes == 3  # the cursor knows the pointer's numbering
        vote(question, 120)
        queue = vote_queue()
        pointer = queue.pointer()
        assert pointer is not None
        slots = range(pointer - 119, pointer + 1)
        pointer_home = next(s for s in pool if pylibmc_client(s.url).get(caches["votes"].make_key(queue.pointer_key)))
        victim = pointer_home if victim_holds_pointer else next(s for s in pool if s is not pointer_home)
        on_victim = [n for n in slots if pylibmc_client(victim.url).get(caches["votes"].make_key(queue.slot_key(n)))]
        assert 0 < len(on_victim) < 120
        victim.kill()
        caches["votes"].close()
        report = flush_votes(grace=0)
        if victim_holds_pointer:  # probing ends at the last readable slot: the victim's slots past it are unseen
            last_readable = max(n for n in slots if n not in on_victim)
            assert report.probe_stopped_at == last_readable and report.pointer_error is not None
            assert report.lost == [n for n in on_victim if n < last_readable]
        else:
            assert report.lost == on_victim
        assert report.votes == 120 - len(on_victim)
        assert sum(Choice.objects.filter(question=question).values_list("votes", flat=True)) == 3 + report.votes
    finally:
        for server in pool:
            server.stop()


# --- kills and overlapping runs, in child processes, on SQLite and PostgreSQL ---------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A database the children share and the parent reads back through them."""
    if request.param == "sqlite":
        yield {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "polls.sqlite3"),
                           "OPTIONS": {"timeout": 30}}}
        return
    import psycopg

    name = f"fence_polls_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                           "HOST": "127.0.0.1", "PORT": "5432"}}
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def child_env(caches_config: dict[str, Any], databases: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "FENCE_TEST_CACHES": json.dumps(caches_config),
            "FENCE_TEST_DATABASES": json.dumps(databases), "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT)}


def script(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "polls_script.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start_flush(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "django", "flush_vote_queue", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_flush_killed_at_random_instants_and_run_twice_at_once_applies_each_vote_once(
        shared_database: dict[str, Any], memcached_server: servers.Server) -> None:
    """PITFALLS 21: SIGKILL the command mid-drain again and again, then two at once: totals are exact.

    The live totals too: every committed batch leaves the pending counters exactly once.
    """
    env = child_env(poll_caches(memcached_server.url), shared_database)
    ids = script(env, "setup")
    raw = pylibmc_client(memcached_server.url)
    seed = int(os.environ.get("FENCE_TEST_SEED", random.randrange(2**32)))
    print(f"FENCE_TEST_SEED={seed}")  # shown on failure, to replay the same kill instants
    rng = random.Random(seed)
    cast: dict[str, int] = {}
    killed_mid_drain = 0
    for round_number in range(4):
        for key, n in script(env, "enqueue", str(ids["question"]), "400", f"round{round_number}").items():
            cast[key] = cast.get(key, 0) + n
        pointer = int(raw.get(":1:polls-votes-curr"))
        first_slot = pointer - 399
        flusher = start_flush(env, "--batch-size", "5")
        deadline = time.monotonic() + 30
        while raw.get(f":1:polls-votes-key-{first_slot}") is not None and time.monotonic() < deadline:
            time.sleep(0.002)  # the drain deletes a slot only after committing it
        time.sleep(rng.uniform(0, 0.05))
        if flusher.poll() is None:
            flusher.send_signal(signal.SIGKILL)
            killed_mid_drain += 1
        flusher.wait(30)
    midway = script(env, "totals")
    for key, n in script(env, "enqueue", str(ids["question"]), "600", "last").items():
        cast[key] = cast.get(key, 0) + n
    both = [start_flush(env, "--batch-size", "7") for _ in range(2)]
    outputs = [process.communicate(timeout=90) for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    final = script(env, "totals")
    expected = {key.split(":")[0]: n for key, n in cast.items() if key.endswith(":queued")}
    assert len(expected) == 3 and sum(expected.values()) == 2200
    assert final["votes"] == expected
    [cursor] = final["cursors"]
    assert (cursor["applied"], cursor["lost"], cursor["ranges"]) == (2200, 0, [])
    assert final["pending"] == {key: 0 for key in final["votes"]}  # live totals == database totals
    assert killed_mid_drain >= 2
    applied = [int(out.split(" vote(s)")[0].split()[-1]) for out, _ in outputs]
    assert sum(applied) == 2200 - sum(midway["votes"].values())


def test_flush_loop_stops_cleanly_on_sigterm(memcached_server: servers.Server, tmp_path: Path) -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "loop.sqlite3")}}
    env = child_env(poll_caches(memcached_server.url), databases)
    ids = script(env, "setup")
    script(env, "enqueue", str(ids["question"]), "20", "loop")
    looper = start_flush(env, "--loop", "--interval", "0.1")
    deadline = time.monotonic() + 30
    while sum(script(env, "totals")["votes"].values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    looper.send_signal(signal.SIGTERM)
    out, err = looper.communicate(timeout=30)
    assert looper.returncode == 0, err
    applied, stopped = out.splitlines()  # the idle runs in between print nothing
    assert applied.startswith("Applied 20 vote(s) to 1 question(s) in ")
    assert stopped == "Stopped."


def test_flush_loop_survives_a_database_error_and_stops_on_a_signal(poll: Question,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from django_fence.polls.flush import FlushReport
    from django_fence.polls.management.commands import flush_vote_queue

    calls = []

    def flaky(**kwargs: Any) -> FlushReport:
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the loop runs: only a flag is set
        return FlushReport(votes=1, questions={poll.pk}, batches=1)

    monkeypatch.setattr(flush_vote_queue, "flush_votes", flaky)
    out, err = io.StringIO(), io.StringIO()
    before = signal.getsignal(signal.SIGTERM)
    call_command("flush_vote_queue", "--loop", "--interval", "0", stdout=out, stderr=err)
    assert len(calls) == 2
    assert err.getvalue() == "Database error, retrying in 0.0s: database is locked\n"
    assert out.getvalue().startswith("Applied 1 vote(s) to 1 question(s) in ")
    assert out.getvalue().endswith("Stopped.\n")
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


def test_flush_negative_grace_is_an_error(poll: Question) -> None:
    vote(poll, 1)
    with pytest.raises(ValueError, match="grace"):
        flush_votes(grace=-1)
    assert totals(poll) == [0, 0, 0]


@pytest.mark.parametrize("attempt", range(5))  # deleting the pointer made this lose votes 2 runs in 6
def test_flush_resets_a_pointer_that_fell_behind_the_drain(poll: Question, attempt: int) -> None:
    """A server rejoining a pool with an old pointer: the flush moves it to a new epoch, and no vote is skipped."""
    queue = vote_queue()
    vote(poll, 3)
    flush_votes()
    position = QueueCursor.objects.get().position
    caches["votes"].set(queue.pointer_key, position - 2)  # the old pointer is back
    report = flush_votes()
    assert report.stale_pointer == position - 2
    moved = queue.pointer()
    assert moved is not None and moved >= (epoch_of(position) + 1) << EPOCH_BITS and moved % (1 << EPOCH_BITS) == 0
    cast = vote(poll, 3, voter="after")
    assert flush_votes().votes == 3
    assert totals(poll) == [1 + cast[0], 1 + cast[1], 1 + cast[2]]


def test_flush_applies_slots_taken_before_the_pointer_was_lost(poll: Question) -> None:
    """The pointer alone is evicted (or its server left the pool): the old numbering is probed and applied."""
    queue = vote_queue()
    vote(poll, 2)
    flush_votes()
    before = vote(poll, 5, voter="unflushed")  # queued, never seen by a flush
    caches["votes"].delete(queue.pointer_key)
    waiting = flush_votes(grace=0)  # no pointer at all: the old numbering is probed
    assert (waiting.votes, waiting.probed, waiting.lost) == (5, 5, [])
    after = vote(poll, 4, voter="after")  # a new pointer, a new numbering
    report = flush_votes(grace=0)
    assert (report.votes, report.lost) == (4, [])
    assert sum(totals(poll)) == 2 + sum(before) + sum(after)


def test_flush_probes_the_old_numbering_when_the_pointer_jumps_to_a_new_epoch(poll: Question) -> None:
    queue = vote_queue()
    vote(poll, 1)
    flush_votes()
    unseen = vote(poll, 4, voter="unseen")
    top = queue.pointer()
    assert top is not None
    caches["votes"].set(queue.pointer_key, (epoch_of(top) + 1) << EPOCH_BITS)  # the pointer was recreated
    after = vote(poll, 2, voter="after")
    out = io.StringIO()
    with pytest.raises(CommandError, match="more may be"):
        call_command("flush_vote_queue", stdout=out)
    assert out.getvalue().startswith("Applied 6 vote(s) to 1 question(s) in ")
    assert (f"probed 4 vote(s) of the old numbering, up to slot {top}; votes queued past it, if any, cannot be "
            "counted.") in out.getvalue()
    assert sum(totals(poll)) == 1 + sum(unseen) + sum(after)


def test_flush_crossing_an_epoch_boundary_skips_no_slot(poll: Question) -> None:
    queue = vote_queue()
    vote(poll, 1)
    flush_votes()
    top = queue.pointer()
    assert top is not None
    boundary = (epoch_of(top) + 1) << EPOCH_BITS
    caches["votes"].set(queue.pointer_key, boundary - 2)  # 2**24 slots later
    QueueCursor.objects.update(position=boundary - 2)
    cast = vote(poll, 4, voter="across")  # slots boundary-1 .. boundary+2: the pointer's epoch changes
    report = flush_votes(grace=0)
    assert (report.votes, report.lost) == (4, [])
    assert totals(poll) == [1 + cast[0], cast[1], cast[2]]


def test_flush_reports_that_votes_past_the_old_numbering_cannot_be_counted(poll: Question) -> None:
    queue = vote_queue()
    vote(poll, 2)
    flush_votes()
    position = QueueCursor.objects.get().position
    vote(poll, 3, voter="wiped")
    caches["votes"].clear()  # memcached restarted: the slots and the pointer are gone
    out = io.StringIO()
    with pytest.raises(CommandError, match="more may be") as info:
        call_command("flush_vote_queue", stdout=out)
    assert info.value.returncode == 3
    assert (f"The queue pointer was lost: probed 0 vote(s) of the old numbering, up to slot {position}; votes "
            "queued past it, if any, cannot be counted.") in out.getvalue()
    pointer = queue.pointer()  # created by the flush, so the next runs do not report the same loss again
    assert pointer is not None and epoch_of(pointer) > epoch_of(position)
    again = io.StringIO()
    call_command("flush_vote_queue", stdout=again)
    assert again.getvalue().startswith("Applied 0 vote(s) to 0 question(s) in ")
    assert again.getvalue().endswith("s; lost slots: 0.\n")
    cast = vote(poll, 3, voter="after")
    assert flush_votes().votes == 3
    assert totals(poll) == [1 + cast[0], 1 + cast[1], cast[2]]


def test_flush_resolves_the_slot_of_a_vote_that_went_to_the_database_without_applying_it(
        poll: Question, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot write whose reply timed out after memcached stored it: the vote counts once, nothing is lost."""
    from django_fence.exceptions import BackendUnavailable
    from django_fence.queues import WriteBehindQueue

    original = WriteBehindQueue._add

    def stored_then_timed_out(self: WriteBehindQueue, key: str, value: Any, ttl: int | None) -> bool:
        original(self, key, value, ttl)
        if key != self.pointer_key:
            raise BackendUnavailable("reply timed out")
        return True

    info = question_info(poll.pk)
    assert info is not None
    monkeypatch.setattr(WriteBehindQueue, "_add", stored_then_timed_out)
    assert cast_vote(info, info.choices[0][0], "timed-out").value == "direct"
    def refused(self: WriteBehindQueue, key: str, value: Any, ttl: int | None) -> bool:
        if key != self.pointer_key:
            raise BackendUnavailable("SERVER_ERROR out of memory storing object")
        return original(self, key, value, ttl)

    monkeypatch.setattr(WriteBehindQueue, "_add", refused)
    assert cast_vote(info, info.choices[1][0], "refused").value == "direct"
    monkeypatch.setattr(WriteBehindQueue, "_add", original)
    vote(poll, 3, voter="queued")
    report = flush_votes(grace=0)
    assert (report.votes, report.direct, report.lost) == (3, 2, [])
    assert totals(poll) == [2, 2, 1]


def live(question: Question) -> list[int]:
    """The live totals the results page shows (database totals read afresh)."""
    caches["default"].clear()
    info = question_info(question.pk)
    assert info is not None
    return list(live_totals(info).votes.values())


def test_flush_killed_between_commit_and_cleanup_settles_the_pending_counters_once(
        poll: Question, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_fence.polls import flush as flush_module

    vote(poll, 4)
    assert live(poll) == [2, 1, 1]

    def killed(queue: Any, batch: Any, touched: Any) -> None:
        raise KeyboardInterrupt  # the process dies right after its commit

    monkeypatch.setattr(flush_module, "_after_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        flush_votes()
    monkeypatch.undo()
    assert totals(poll) == [2, 1, 1]
    vote(poll, 3, voter="more")
    assert flush_votes().votes == 3  # settles the killed run's batch, and its own
    assert flush_votes().votes == 0  # nothing settled twice
    assert live(poll) == totals(poll) == [3, 2, 2]
    assert QueueCursor.objects.get().unsettled == {}


def test_flush_at_rest_repairs_a_settle_that_died_between_its_marker_and_its_decrement(
        poll: Question, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_fence.polls import flush as flush_module

    vote(poll, 4)
    monkeypatch.setattr(flush_module, "_after_commit", lambda queue, batch, touched: None)  # died after commit
    flush_votes()
    monkeypatch.undo()
    [version] = QueueCursor.objects.get().unsettled
    caches["votes"].add(f"{vote_queue().prefix}-settled-{version}", 1)  # ... after taking the marker
    assert live(poll) == [4, 2, 2]  # counted twice
    assert flush_votes().votes == 0
    assert live(poll) == totals(poll) == [2, 1, 1]


def test_flush_rebuild_totals_repairs_the_live_totals_after_the_counters_were_lost(poll: Question) -> None:
    vote(poll, 3)
    assert flush_votes().votes == 3
    queued = vote(poll, 2, voter="queued")
    caches["votes"].delete_many([pending_key(pk) for pk in poll.choices.values_list("pk", flat=True)])  # evicted
    assert live(poll) == totals(poll) == [1, 1, 1]  # the 2 queued votes are missing
    assert sum(rebuild_live_totals().values()) == 2
    assert live(poll) == [a + b for a, b in zip(totals(poll), queued, strict=True)]
    out = io.StringIO()
    call_command("flush_vote_queue", "--rebuild-totals", stdout=out)
    assert out.getvalue().endswith("Rebuilt the live totals of 3 choice(s): 0 vote(s) still queued.\n")
    assert live(poll) == totals(poll) == [2, 2, 1]


def test_flush_at_rest_repairs_the_live_totals_after_a_lost_slot(poll: Question) -> None:
    queue = vote_queue()
    vote(poll, 5)
    pointer = queue.pointer()
    assert pointer is not None
    caches["votes"].delete(queue.slot_key(pointer - 4))  # evicted: its vote stayed in the pending counter
    report = flush_votes(grace=0)
    assert (report.votes, report.lost) == (4, [pointer - 4])
    assert live(poll) == totals(poll) == [1, 2, 1]


def test_flush_command_draws_progress_on_a_terminal(poll: Question, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_fence.polls.management.commands import flush_vote_queue

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(flush_vote_queue, "PROGRESS_MIN_SLOTS", 1)
    vote(poll, 4)
    out = Terminal()
    call_command("flush_vote_queue", "--batch-size", "2", stdout=out)
    drawn, summary = out.getvalue().rsplit("\n", 2)[:2]
    assert drawn == "\r[" + "#" * 15 + "." * 15 + "] 2/4 slots\r[" + "#" * 30 + "] 4/4 slots"
    assert summary.startswith("Applied 4 vote(s) to 1 question(s) in ")
