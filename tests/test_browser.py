"""The admin's Fence section in a real browser: Playwright driving Debian's Chromium against a live server.

Streams live on the suite's real redis-server. Every step leaves a screenshot under
test-artifacts/screenshots/<test>/ (or $FENCE_TEST_ARTIFACTS/screenshots/); the run prints where.
Without chromium (or Playwright) these tests are skipped, and fail when CI is set.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from django_fence.streams import Streams
from tests.browser import (
    CHROMIUM_ARGS,
    PASSWORD,
    RECORDER,
    SCREENSHOTS,
    SET_VISIBILITY,
    Screenshots,
    chromium_executable,
    log_in,
    polls,
    quiesce,
    screenshot_directory,
    unavailable,
)
from tests.conftest import fenced_caches

try:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:
    unavailable("playwright is not installed: pip install -e '.[test]' (and never 'playwright install')")

DASHBOARD = "/admin/django_fence/fence/"
BASE_MS, MAX_FACTOR = 200, 4  # the polling tests' ADMIN_REFRESH_INTERVAL (0.2 s) and ADMIN_REFRESH_MAX_FACTOR
CAP_MS = BASE_MS * MAX_FACTOR
ITEMS = [("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1)]


def stream_url(name: str = "jobs", label: str = "main") -> str:
    return reverse("admin:django_fence_stream", args=(label, name))


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for this file; each test opens its own context (cookies, storage)."""
    executable = chromium_executable()
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs its asyncio loop in this thread (in a greenlet) from start to stop, so
        # asyncio.get_running_loop() answers here and Django's async-safety check refuses the ORM calls of
        # the tests (users) and of transactional_db's flush with SynchronousOnlyOperation. No coroutine of
        # ours ever runs in that loop; the module scope ends the loop, and this setting, with this file.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Screenshots:
    """The session's screenshot folder; tests/conftest.py prints it at the end of the run."""
    shots = Screenshots(screenshot_directory())
    pytestconfig.stash[SCREENSHOTS] = shots
    return shots


@pytest.fixture
def shoot(screenshots: Screenshots, request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """``shoot(page, "step")``: a full-page screenshot, numbered, in this test's folder."""
    folder = screenshots.folder(request.node.name)
    return lambda page, step: screenshots.take(page, folder, step)


@pytest.fixture
def jobs(settings: Any, redis_client: Any, redis_url: str) -> Streams:
    """A stream "jobs" (a..e, priorities 5..1) on the suite's Redis, the admin's server "main"."""
    settings.CACHES = {
        **fenced_caches({"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "browser-backing"}),
        "votes": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "browser-votes"},
    }
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2, "STREAMS_REDIS": {"main": redis_url}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # logins in ms, not PBKDF2's 0.5 s
    streams = Streams(redis_client)
    streams.psaddmany("jobs", [(key, f"value of {key}", score) for key, score in ITEMS])
    return streams


@pytest.fixture
def log_in_as(browser: Browser, live_server: LiveServer, jobs: Streams) -> Iterator[Callable[..., Page]]:
    """``log_in_as("view_fence", ...)``: a new staff user with those permissions, logged in through the
    admin's login form in a fresh browser context; its page, on the admin index."""
    contexts = []

    def open_page(*perms: str) -> Page:
        account = User.objects.create_user(f"u{uuid.uuid4().hex[:8]}", password=PASSWORD, is_staff=True)
        for codename in perms:
            account.user_permissions.add(Permission.objects.get(codename=codename,
                                                                content_type__app_label="django_fence"))
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.set_default_timeout(5_000)
        context.add_init_script(RECORDER)
        page = context.new_page()
        log_in(page, account.username)
        return page

    yield open_page
    for context in contexts:
        for page in context.pages:
            quiesce(page)
        context.close()


@pytest.fixture
def polling(settings: Any, jobs: Streams) -> None:
    """A dashboard that polls every 0.2 s, slowing down to every 0.8 s while nothing changes."""
    settings.DJANGO_FENCE = {**settings.DJANGO_FENCE, "ADMIN_REFRESH_INTERVAL": BASE_MS / 1000,
                             "ADMIN_REFRESH_MAX_FACTOR": MAX_FACTOR}


def keys(page: Page) -> Locator:
    """The keys of the stream page's items, in the page's order."""
    return page.locator("tr.fence-item th.fence-key")


def cells(row: Locator) -> Locator:
    return row.locator("td")


def wait_for_cap(page: Page) -> None:
    """Wait until the dashboard has slowed down to its longest delay."""
    page.wait_for_function(f"window.djangoFenceDashboard.state && window.djangoFenceDashboard.state.delay === {CAP_MS}",
                           timeout=5_000)


def assert_follows_the_rule(records: list[dict[str, Any]]) -> None:
    """After each poll the delay is the base if the numbers changed, else twice the last one, capped."""
    for before, after in itertools.pairwise(records):
        changed = after["changes"] > before["changes"]
        assert after["delay"] == (BASE_MS if changed else min(before["delay"] * 2, CAP_MS)), records


# -- logging in, the dashboard, a stream ---------------------------------------------------------------
@pytest.mark.timeout(30)
def test_an_operator_logs_in_opens_the_dashboard_then_a_stream(log_in_as: Callable[..., Page],
                                                              shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence", "change_fence")
    shoot(page, "admin-index")
    link = page.locator(f'#content-main th > a[href="{DASHBOARD}"]')  # the model's row (the app's caption: Fence too)
    expect(link).to_have_text("Fence")
    link.click()
    expect(page).to_have_url(re.compile(re.escape(DASHBOARD) + "$"))
    expect(page.get_by_role("heading", name="Fence dashboard")).to_be_visible()
    row = page.locator('tr[data-stream="jobs"]')
    expect(cells(row)).to_have_text(["5", "a", "5", "0", "0"])  # length, top item and priority, excluded, expiring
    expect(page.get_by_role("button", name="Run expiry now")).to_be_visible()
    shoot(page, "dashboard")
    row.get_by_role("link", name="jobs").click()
    expect(page).to_have_url(re.compile(re.escape(stream_url()) + "$"))
    expect(keys(page)).to_have_text(["a", "b", "c", "d", "e"])
    expect(page.locator("tr.fence-item td.fence-score")).to_have_text(["5", "4", "3", "2", "1"])
    expect(page.get_by_role("button", name="Delete below a threshold…")).to_be_visible()
    shoot(page, "stream")


@pytest.mark.timeout(30)
def test_changing_an_items_priority_moves_it_in_the_list(log_in_as: Callable[..., Page], jobs: Streams,
                                                         shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence", "change_fence")
    page.goto(stream_url())
    row = page.locator('tr.fence-item[data-key="d"]')
    expect(row.locator(".fence-position")).to_have_text("4")
    shoot(page, "stream-before-bump")
    row.get_by_label("Change the priority of d by").fill("10")
    row.get_by_role("button", name="Change").click()
    expect(page.locator("ul.messagelist li")).to_have_text(
        ["Stream 'jobs': Changed the priority of 'd' by +10; it is now 12."])
    expect(keys(page)).to_have_text(["d", "a", "b", "c", "e"])
    expect(row.locator(".fence-position")).to_have_text("1")
    expect(row.locator(".fence-score")).to_have_text("12")
    shoot(page, "stream-after-bump")
    assert jobs.client.zscore("jobs:s", "d") == 12


@pytest.mark.timeout(30)
def test_delete_below_a_threshold_goes_through_the_confirmation_page(log_in_as: Callable[..., Page], jobs: Streams,
                                                                     shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence", "change_fence")
    page.goto(stream_url())
    form = page.locator("form.fence-action-delete_below")
    form.get_by_label("Threshold").fill("2")
    form.get_by_role("button", name="Delete below a threshold…").click()
    expect(page.get_by_role("heading", name="Are you sure?")).to_be_visible()
    expect(page.locator("#content p").first).to_have_text(
        "Delete below a threshold on stream jobs (main): Delete the 2 item(s) with a priority at or below 2.")
    assert [key.decode() for key in jobs.pskeys("jobs")] == ["e", "d", "c", "b", "a"]  # nothing deleted yet
    shoot(page, "confirmation")
    page.get_by_role("button", name="Yes, I\N{RIGHT SINGLE QUOTATION MARK}m sure").click()
    expect(page).to_have_url(re.compile(re.escape(stream_url()) + "$"))
    expect(page.locator("ul.messagelist li")).to_have_text(
        ["Stream 'jobs': Deleted 2 item(s) with a priority at or below 2: e, d."])
    expect(keys(page)).to_have_text(["a", "b", "c"])
    shoot(page, "after-delete")
    assert [key.decode() for key in jobs.pskeys("jobs")] == ["c", "b", "a"]


@pytest.mark.timeout(30)
def test_the_confirmation_pages_no_deletes_nothing(log_in_as: Callable[..., Page], jobs: Streams,
                                                   shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence", "change_fence")
    page.goto(stream_url())
    page.locator("form.fence-action-delete_below").get_by_label("Threshold").fill("4")
    page.get_by_role("button", name="Delete below a threshold…").click()
    page.get_by_role("link", name="No, take me back").click()
    expect(page).to_have_url(re.compile(re.escape(stream_url()) + "$"))
    expect(keys(page)).to_have_text(["a", "b", "c", "d", "e"])
    shoot(page, "after-no")
    assert len(jobs.pskeys("jobs")) == 5


@pytest.mark.timeout(30)
def test_a_view_only_user_sees_the_numbers_and_no_button(log_in_as: Callable[..., Page],
                                                        shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence")
    content = page.locator("#content")
    page.goto(DASHBOARD)
    expect(cells(page.locator('tr[data-stream="jobs"]'))).to_have_text(["5", "a", "5", "0", "0"])
    expect(content.locator("form, button, input")).to_have_count(0)
    shoot(page, "dashboard-view-only")
    page.goto(stream_url())
    expect(keys(page)).to_have_text(["a", "b", "c", "d", "e"])
    # the key-prefix search is all there is to press or fill in
    expect(content.locator("button, input:not([type=hidden])")).to_have_count(2)
    expect(content.get_by_role("button", name="Search")).to_have_count(1)
    expect(content.get_by_role("textbox")).to_have_attribute("name", "q")
    expect(content.locator('form[method="post"]')).to_have_count(0)
    shoot(page, "stream-view-only")


# -- auto-refresh (PITFALLS 25) ------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_the_dashboard_polls_and_slows_down_while_nothing_changes(log_in_as: Callable[..., Page], polling: None,
                                                                  shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence")
    page.goto(DASHBOARD)
    wait_for_cap(page)
    page.wait_for_function("window.fenceRecord.polls.length >= 5")  # two more polls at the longest delay
    records = polls(page)
    assert records[0] == {"polls": 0, "delay": BASE_MS, "changes": 0}
    assert [record["polls"] for record in records] == list(range(len(records)))
    assert_follows_the_rule(records)
    assert [record["delay"] for record in records[:3]] == [BASE_MS, 2 * BASE_MS, 4 * BASE_MS]
    # each fetch waited at least the delay that the poll before it set
    started: list[float] = page.evaluate("window.fenceRecord.fetches")
    for gap, record in zip(itertools.starmap(lambda a, b: b - a, itertools.pairwise(started)), records[1:],
                           strict=False):
        assert gap >= record["delay"] - 1, (started, records)
    expect(page.locator(".fence-updated")).to_have_text(re.compile(r"^Updated "))
    shoot(page, "dashboard-polling")


@pytest.mark.timeout(30)
def test_a_change_in_redis_shows_up_without_reload_and_resets_the_delay(
        log_in_as: Callable[..., Page], polling: None, jobs: Streams, shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence")
    page.goto(DASHBOARD)
    page.evaluate("window.sameDocument = true")
    wait_for_cap(page)
    changes = page.evaluate("window.djangoFenceDashboard.state.changes")
    jobs.psadd("fresh", "x", "new", 7)
    jobs.psincrement("jobs", "e", 10)
    expect(cells(page.locator('tr[data-stream="fresh"]'))).to_have_text(["1", "x", "7", "0", "0"])
    expect(cells(page.locator('tr[data-stream="jobs"]'))).to_have_text(["5", "e", "11", "0", "0"])
    assert page.evaluate("window.sameDocument") is True
    page.wait_for_function(f"window.fenceRecord.polls.some(record => record.changes > {changes})")
    records = polls(page)
    assert_follows_the_rule(records)
    assert next(record for record in records if record["changes"] > changes)["delay"] == BASE_MS
    shoot(page, "dashboard-after-change")


@pytest.mark.timeout(30)
def test_a_hidden_tab_stops_polling_and_polls_at_once_when_shown(log_in_as: Callable[..., Page], polling: None,
                                                                  shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence")
    page.goto(DASHBOARD)
    wait_for_cap(page)  # the next poll is 0.8 s away: one "at once" is told apart from a scheduled one
    hidden = page.evaluate(SET_VISIBILITY, True)
    assert hidden["scheduled"] is False
    with pytest.raises(PlaywrightTimeout):  # nothing for twice the longest delay
        page.wait_for_function(f"window.fenceRecord.fetches.length > {hidden['fetches']}", timeout=2 * CAP_MS)
    polled = len(polls(page))
    shown = page.evaluate(SET_VISIBILITY, False)
    assert shown["fetches"] == hidden["fetches"] + 1  # the fetch started inside the event's listener
    page.wait_for_function(f"window.fenceRecord.polls.length > {polled}")
    records = polls(page)
    after = records[polled]
    assert after["delay"] == (BASE_MS if after["changes"] > records[polled - 1]["changes"] else 2 * BASE_MS)
    shoot(page, "dashboard-shown-again")


@pytest.mark.timeout(30)
def test_a_tab_hidden_during_a_refresh_schedules_no_other(log_in_as: Callable[..., Page], polling: None,
                                                          shoot: Callable[[Page, str], Path]) -> None:
    page = log_in_as("view_fence")
    page.goto(DASHBOARD)
    wait_for_cap(page)
    started = page.evaluate("window.fenceRecord.fetches.length")
    page.evaluate("() => { window.fenceRecord.onFetch = () => window.fenceSetVisibility(true); }")
    page.wait_for_function(f"window.fenceRecord.fetches.length > {started} && window.fenceRecord.inflight === 0")
    page.wait_for_function(f"window.djangoFenceDashboard.state.polls === {started + 1}")  # that refresh completed
    assert page.evaluate("window.djangoFenceDashboard.state.timer") is None
    with pytest.raises(PlaywrightTimeout):  # nothing for twice the longest delay
        page.wait_for_function(f"window.fenceRecord.fetches.length > {started + 1}", timeout=2 * CAP_MS)
    shoot(page, "dashboard-hidden")


@pytest.mark.timeout(30)
def test_the_queue_lag_counts_up_in_the_page_without_polling(log_in_as: Callable[..., Page], settings: Any,
                                                             shoot: Callable[[Page, str], Path]) -> None:
    from django_fence.polls.flush import flush_votes
    from django_fence.polls.models import Question
    from django_fence.polls.services import cast_vote, question_info

    settings.DJANGO_FENCE = {**settings.DJANGO_FENCE, "ADMIN_REFRESH_INTERVAL": 60}  # no poll during the test
    question = Question.objects.create(question_text="Lag?")
    choice = question.choices.create(choice_text="yes")
    info = question_info(question.pk)
    assert info is not None
    cast_vote(info, choice.pk, "first")
    flush_votes()
    cast_vote(info, choice.pk, "second")  # waits in the queue: the lag grows from the flush on
    page = log_in_as("view_fence")
    page.goto(DASHBOARD)
    expect(page.locator('[data-queue="depth"]')).to_have_text("1")
    lag = page.locator(".fence-since")
    shown = int(lag.inner_text())
    page.wait_for_function(f"Number(document.querySelector('.fence-since').textContent) >= {shown + 2}",
                           timeout=5_000)
    assert page.evaluate("window.fenceRecord.fetches.length") == 0
    shoot(page, "dashboard-lag")
