"""Vote benchmark: the poll app's queued vote against a vote that writes to the database directly.

In one run, against one memcached started here on a free loopback port, for SQLite and PostgreSQL:
gunicorn serves benchmarks/votes_site.py on a free loopback port, and P client processes (one
connection at a time each) cast V votes each, first through the real vote view
(``polls:vote``: fence, voter mark, queue slot, live counter) and then through a baseline view
that reads the question and choice and runs ``F("votes") + 1`` in a transaction. After each row
the queue is flushed with ``manage.py flush_vote_queue`` and the database totals are compared with
the votes the clients saw accepted. The table gives votes/s (accepted votes over the row's wall
time), p50/p99 latency, errors (any answer but the redirect), SQL statements per vote (counted
by a middleware into a response header) and whether the totals were exact.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python benchmarks/votes.py [--processes 8] [--votes 250] [--workers 4]
                                         [--databases sqlite postgresql]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import StartGate, describe, format_table, percentile, run_processes  # noqa: E402

HEADERS = ["database", "vote path", "votes", "votes/s", "p50 ms", "p99 ms", "errors", "SQL/vote", "totals"]


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """A fresh database of the kind: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(workdir / f"{uuid.uuid4().hex}.db")}}
        return
    import psycopg

    name = f"fence_votes_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                               "HOST": "127.0.0.1", "PORT": "5432", "CONN_MAX_AGE": 60}}
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def site_env(databases: dict[str, Any], memcached: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.votes_site", "PYTHONPATH": str(ROOT),
            "VOTES_BENCH_DATABASES": json.dumps(databases), "VOTES_BENCH_MEMCACHED": memcached}


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command of the benchmark site; its stdout (Django 5.2's shell adds a first line)."""
    done = subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


SETUP = """
from django_fence.polls.models import Question
q = Question.objects.create(question_text="Benchmark?")
print(q.pk, *[q.choices.create(choice_text=t).pk for t in ("a", "b", "c")])
"""


def db_total(env: dict[str, str], question: int) -> int:
    code = f"from django_fence.polls.models import Choice; print(sum(Choice.objects.filter(question={question})" \
           ".values_list('votes', flat=True)))"
    return int(manage(env, "shell", "-c", code).strip().splitlines()[-1])


def empty(memcached: str) -> None:
    from pymemcache.client.base import Client

    host, port = memcached.rsplit(":", 1)
    client = Client((host, int(port)))
    client.flush_all()
    client.close()


@contextmanager
def gunicorn(env: dict[str, str], workers: int) -> Iterator[int]:
    from tests.servers import free_port, wait_for_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "django.core.wsgi:get_wsgi_application()", "--workers", str(workers),
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", "2048"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(30)


def request(port: int, method: str, path: str, body: str = "", headers: dict[str, str] | None = None,
            ) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def client_child(port: int, question: int, path: str, choices: list[int], votes: int, gate: StartGate,
                 results: Any) -> None:
    """One client: fetch a CSRF token, wait for the others, cast ``votes`` votes, one voter each."""
    try:
        page = request(port, "GET", f"/polls/{question}/")
        [cookie] = [c for c in page.headers.get_all("Set-Cookie") or [] if c.startswith("csrftoken=")]
        token = cookie.split("=", 1)[1].split(";")[0]
        headers = {"Cookie": f"csrftoken={token}", "Content-Type": "application/x-www-form-urlencoded"}
    except Exception:
        gate.abort()
        raise
    latencies, errors, queries, samples = [], 0, 0, []
    gate.wait()
    started = time.time()
    for i in range(votes):
        body = f"choice={choices[i % len(choices)]}&csrfmiddlewaretoken={token}"
        began = time.perf_counter()
        try:
            response = request(port, "POST", path, body, headers)
            ok = response.status == 302
            queries += int(response.headers.get("X-SQL-Queries", 0))
            if not ok and len(samples) < 3:
                samples.append(f"HTTP {response.status}")
        except Exception as exc:
            ok = False
            if len(samples) < 3:
                samples.append(describe(exc))
        latencies.append((time.perf_counter() - began) * 1000)
        errors += not ok
    results.put({"latencies_ms": latencies, "errors": errors, "queries": queries, "samples": samples,
                 "started": started, "ended": time.time()})


def run_row(kind: str, label: str, path: str, env: dict[str, str], port: int, question: int, choices: list[int],
            args: argparse.Namespace) -> list[str]:
    before = db_total(env, question)
    gate = StartGate(args.processes)
    argsets = [(port, question, path, choices, args.votes, gate)] * args.processes
    results = run_processes(client_child, argsets, timeout=600, gate=gate)
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        return [kind, label, "-", "-", "-", "-", "-", "-", f"failed: {failed[0]}"]
    latencies = [ms for r in results for ms in r["latencies_ms"]]
    errors = sum(r["errors"] for r in results)
    accepted = len(latencies) - errors
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    if path.startswith("/polls/"):
        manage(env, "flush_vote_queue", "--batch-size", "1000", "--verbosity", "0")
    applied = db_total(env, question) - before
    exact = "exact" if applied == accepted else f"{applied} != {accepted}"
    samples = sorted({s for r in results for s in r["samples"]})
    if samples:
        print(f"  {kind} {label}: {', '.join(samples)}", file=sys.stderr)
    queries = sum(r["queries"] for r in results) / len(latencies)
    return [kind, label, str(len(latencies)), f"{accepted / wall:.0f}", f"{percentile(latencies, 0.5):.1f}",
            f"{percentile(latencies, 0.99):.1f}", str(errors), f"{queries:.2f}", exact]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Queued votes against direct database votes.")
    parser.add_argument("--processes", type=int, default=8, metavar="P", help="concurrent clients (8)")
    parser.add_argument("--votes", type=int, default=250, metavar="V", help="votes per client (250)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (4)")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    if args.processes < 1 or args.votes < 1 or args.workers < 1:
        parser.error("--processes, --votes and --workers must be at least 1")
    from importlib import metadata

    from tests.servers import start_memcached

    print(f"$ {shlex.join(sys.orig_argv)}")
    print(f"{args.processes} clients x {args.votes} votes, gunicorn {metadata.version('gunicorn')} with "
          f"{args.workers} sync workers, Django {metadata.version('django')}, {os.cpu_count()} CPUs")
    rows = []
    memcached = start_memcached()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for kind in args.databases:
                with database(kind, Path(workdir)) as databases:
                    empty(memcached.url)  # one queue per database: the other database's cursor is not this one's
                    env = site_env(databases, memcached.url)
                    manage(env, "migrate", "--verbosity", "0")
                    created = manage(env, "shell", "-c", SETUP).strip().splitlines()[-1]
                    question, *choices = (int(x) for x in created.split())
                    with gunicorn(env, args.workers) as port:
                        for label, path in (("queued (memcached)", f"/polls/{question}/vote/"),
                                            ("direct (F() update)", f"/direct/{question}/vote/")):
                            print(f"... {kind} {label}", file=sys.stderr, flush=True)
                            rows.append(run_row(kind, label, path, env, port, question, choices, args))
    finally:
        memcached.stop()
    print(format_table(HEADERS, rows))


if __name__ == "__main__":
    main()
