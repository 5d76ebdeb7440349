"""Helpers of the browser tests (tests/test_browser.py): Debian's Chromium, screenshots, the admin login.

Importing this module needs neither Playwright nor Chromium: tests/conftest.py imports it for
the screenshot summary, and a machine without them skips the browser tests (fails them under CI).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
#: Chromium's flags: we run as root (no sandbox) on a machine without a GPU that refuses the internet,
#: so nothing may call home (background networking, component updates, sync, QUIC probes, first-run pages).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
PASSWORD = "a browser's password"

#: Installed in every page before its own scripts. ``fenceRecord`` counts the page's fetches (start times,
#: in flight) and samples dashboard.js's state every 5 ms, one record per completed poll (a poll waits at
#: least 50 ms, dashboard.js's floor, so none goes unseen); ``fenceRecord.onFetch``, if set, runs once, as
#: the next fetch starts. ``fenceSetVisibility(hidden)`` fakes the tab's visibility (a headless tab cannot
#: be hidden) and tells the page, as a browser would; it returns how many fetches the page has started once
#: its listener has run, and whether a refresh is scheduled.
RECORDER = """
(() => {
  const record = window.fenceRecord = { fetches: [], inflight: 0, polls: [], onFetch: null };
  const fetch = window.fetch.bind(window);
  window.fetch = (...args) => {
    record.fetches.push(performance.now());
    record.inflight += 1;
    const hook = record.onFetch;
    record.onFetch = null;
    if (hook) { hook(); }
    return fetch(...args).finally(() => { record.inflight -= 1; });
  };
  let seen = -1;
  setInterval(() => {
    const state = window.djangoFenceDashboard && window.djangoFenceDashboard.state;
    if (state && state.polls !== seen) {
      seen = state.polls;
      record.polls.push({ polls: state.polls, delay: state.delay, changes: state.changes });
    }
  }, 5);
  window.fenceSetVisibility = (hidden) => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    Object.defineProperty(document, "visibilityState", { configurable: true,
                                                         get: () => hidden ? "hidden" : "visible" });
    document.dispatchEvent(new Event("visibilitychange"));
    const state = window.djangoFenceDashboard.state;
    return { fetches: record.fetches.length, scheduled: state.timer !== null };
  };
})();
"""
SET_VISIBILITY = "(hidden) => window.fenceSetVisibility(hidden)"


def unavailable(reason: str) -> NoReturn:
    """Skip a test that needs a browser this machine lacks; under CI (``CI`` set), fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so a missing browser fails the run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def chromium_executable() -> str:
    """Debian's Chromium (the ``chromium`` package): Playwright drives it, it never downloads a browser."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        unavailable("chromium is not installed: run 'sudo apt-get install -y chromium' and retry")
    return path


def screenshot_directory() -> Path:
    """``$FENCE_TEST_ARTIFACTS/screenshots``, by default ``<repo>/test-artifacts/screenshots``."""
    return Path(os.environ.get("FENCE_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "screenshots"


@dataclasses.dataclass
class Screenshots:
    """The session's screenshots: one folder per test, one numbered picture per step."""

    directory: Path
    taken: list[Path] = dataclasses.field(default_factory=list)

    def folder(self, test_name: str) -> Path:
        """The test's folder, emptied: a rerun replaces its pictures instead of mixing old and new."""
        folder = self.directory / re.sub(r"[^\w.-]+", "_", test_name)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def take(self, page: Page, folder: Path, step: str) -> Path:
        path = folder / f"{sum(1 for _ in folder.iterdir()) + 1:02d}-{step}.png"
        page.screenshot(path=path, full_page=True)
        self.taken.append(path)
        return path


#: Where tests/conftest.py finds the session's Screenshots to print their folder at the end of the run.
SCREENSHOTS = pytest.StashKey[Screenshots]()


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Log in through the admin's own login form and land on the admin index."""
    from playwright.sync_api import expect

    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))


def polls(page: Page) -> list[dict[str, Any]]:
    """The recorder's poll records: ``{"polls", "delay", "changes"}`` after each completed poll, first the start."""
    records: list[dict[str, Any]] = page.evaluate("window.fenceRecord.polls")
    return records


def quiesce(page: Page) -> None:
    """Stop the page's polling and wait for its fetches to end, so no request outlives the test's database."""
    if page.is_closed() or not page.evaluate("Boolean(window.fenceRecord)"):
        return
    if page.evaluate("Boolean(window.djangoFenceDashboard && window.djangoFenceDashboard.state)"):
        page.evaluate(SET_VISIBILITY, True)
    page.wait_for_function("window.fenceRecord.inflight === 0")
