"""Poll actions run in a child process (``python tests/polls_script.py ACTION ...``), printing JSON.

The child reads its caches and database from FENCE_TEST_CACHES / FENCE_TEST_DATABASES, so the
parent can point it at its own memcached and at a database that outlives the child (a SQLite
file, a PostgreSQL database); used by the flush tests that SIGKILL ``flush_vote_queue``.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> dict[str, object]:
    from django.core.management import call_command

    from django_fence.polls.models import Choice, Question, QueueCursor
    from django_fence.polls.services import cast_vote, counters, pending_key, question_info

    action = argv[0]
    if action == "setup":
        call_command("migrate", verbosity=0)
        question = Question.objects.create(question_text="Which one?")
        ids = [question.choices.create(choice_text=f"choice {i}").pk for i in range(3)]
        return {"question": question.pk, "choices": ids}
    if action == "enqueue":
        question_id, count, voter_prefix = int(argv[1]), int(argv[2]), argv[3]
        info = question_info(question_id)
        assert info is not None
        cast: dict[str, int] = {}
        for i in range(count):
            choice_id = info.choices[i % len(info.choices)][0]
            outcome = cast_vote(info, choice_id, f"{voter_prefix}-{i}")
            cast[f"{choice_id}:{outcome.value}"] = cast.get(f"{choice_id}:{outcome.value}", 0) + 1
        return cast
    if action == "totals":
        votes = {str(pk): n for pk, n in Choice.objects.values_list("pk", "votes")}
        cursors = list(QueueCursor.objects.values("prefix", "position", "applied", "lost", "ranges"))
        pending = {str(pk): counters().get_count(pending_key(pk)) for pk in Choice.objects.values_list("pk", flat=True)}
        return {"votes": votes, "cursors": cursors, "pending": pending}
    raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()
    print(json.dumps(main(sys.argv[1:])))
