"""``manage.py flush_vote_queue``: apply the queued votes to ``Choice.votes``, exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from django_fence.exceptions import BackendUnavailable
from django_fence.polls.flush import FlushReport, flush_votes, rebuild_live_totals
from django_fence.queues import QueueUnavailable

EXIT_UNREACHABLE = 2
EXIT_LOST = 3
SLEEP_STEP = 0.05  # --loop sleeps in short steps, so a signal ends it promptly
PROGRESS_MIN_SLOTS = 5000  # smaller drains end before a bar is worth drawing


class Command(BaseCommand):
    help = (
        "Apply every vote waiting in the write-behind queue to the database, exactly once: each batch "
        "commits the totals and the queue position in one transaction, so a killed run can simply be "
        "rerun, and overlapping runs never apply a vote twice. Exit codes: 0 done; 1 error; "
        "2 the votes cache is unreachable; 3 done, but queue slots were lost (listed) or the queue pointer was lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000,
                            help="Slots read and committed per transaction (default: %(default)s).")
        parser.add_argument("--loop", action="store_true",
                            help="Keep flushing until interrupted (SIGINT/SIGTERM end it after the current batch); "
                                 "prints a summary only for runs that did something (all of them with -v 2).")
        parser.add_argument("--interval", type=float, default=1.0,
                            help="Seconds between two flushes with --loop (default: %(default)s).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Read the queue and print what would be applied; write nothing.")
        parser.add_argument("--rebuild-totals", action="store_true",
                            help="Flush, then reset the live (pending) counters from the queue's unapplied slots: "
                                 "after memcached restarted or slots were lost. Run it while votes are quiet.")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size, interval = options["batch_size"], options["interval"]
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, got {batch_size}.")
        if interval < 0:
            raise CommandError(f"--interval must be >= 0 seconds, got {interval}.")
        self.verbosity = options["verbosity"]
        if not options["loop"]:
            report = self._flush(batch_size, options["dry_run"], stop=None)
            if options["rebuild_totals"] and not options["dry_run"]:
                self._rebuild(batch_size)
            if report.lost or report.probe_stopped_at is not None:
                raise CommandError(f"{len(report.lost)} queue slot(s) were lost"
                                   + (", and more may be (the pointer was lost)." if report.probe_stopped_at
                                      is not None else "."), returncode=EXIT_LOST)
            return
        self._stopping = False
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopping:
                try:
                    self._flush(batch_size, options["dry_run"], stop=lambda: self._stopping, quiet=True)
                except CommandError as exc:  # keep looping through an outage of the votes cache
                    self.stderr.write(str(exc))
                except DatabaseError as exc:  # and of the database: the batch rolled back, the next run retries
                    self.stderr.write(f"Database error, retrying in {interval}s: {exc}")
                deadline = time.monotonic() + interval
                while not self._stopping and time.monotonic() < deadline:
                    time.sleep(min(SLEEP_STEP, max(0.0, deadline - time.monotonic())))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.verbosity:
            self.stdout.write("Stopped.")

    def _request_stop(self, signum: int, frame: object) -> None:
        # Only a flag: Event.set() in a handler takes a lock the interrupted Event.wait() may hold (deadlock).
        self._stopping = True

    def _flush(self, batch_size: int, dry_run: bool, stop: Callable[[], bool] | None,
               quiet: bool = False) -> FlushReport:
        """One flush; with ``quiet`` (``--loop``) a run that found nothing prints nothing below verbosity 2."""
        show_progress = self.verbosity > 0 and hasattr(self.stdout, "isatty") and self.stdout.isatty()
        try:
            report = flush_votes(batch_size=batch_size, dry_run=dry_run,
                                 should_stop=stop if stop is not None else lambda: False,
                                 progress=self._progress if show_progress else None)
        except QueueUnavailable as exc:
            raise CommandError(f"Vote queue unreachable: {exc}", returncode=EXIT_UNREACHABLE) from exc
        if show_progress and self._drawn:
            self.stdout.write("")
        self._drawn = False
        idle = report.batches == 0 and report.stale_pointer is None and report.probe_stopped_at is None
        if self.verbosity > 1 or (self.verbosity and not (quiet and idle)):
            self.stdout.write(self._summary(report))
        if report.pointer_error is not None:
            raise CommandError(f"Vote queue unreachable: {report.pointer_error}", returncode=EXIT_UNREACHABLE)
        return report

    def _rebuild(self, batch_size: int) -> None:
        try:
            pending = rebuild_live_totals(batch_size=batch_size)
        except BackendUnavailable as exc:
            raise CommandError(f"Vote queue unreachable: {exc}", returncode=EXIT_UNREACHABLE) from exc
        if self.verbosity:
            self.stdout.write(f"Rebuilt the live totals of {len(pending)} choice(s): "
                              f"{sum(pending.values())} vote(s) still queued.")

    _drawn = False

    def _progress(self, done: int, known: int) -> None:
        if known < PROGRESS_MIN_SLOTS:
            return
        width = 30
        filled = width * min(done, known) // known
        self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{known} slots", ending="")
        self.stdout.flush()
        self._drawn = True

    def _summary(self, report: FlushReport) -> str:
        styles = {"error": self.style.ERROR, "warning": self.style.WARNING}
        return "\n".join(styles.get(level, str)(text) for level, text in report.lines())
