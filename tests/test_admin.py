"""The admin's Fence section with Django's test client: every page, action, permission case and bad input.

Streams live on the suite's real redis-server, the vote queue on its real memcached.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.cache import caches
from django.test import Client
from django.urls import reverse

from django_fence.dashboard import encode_key
from django_fence.streams import Streams
from tests.conftest import fenced_caches
from tests.test_flush import poll_caches, totals, vote

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db]

DASHBOARD = "/admin/django_fence/fence/"
DATA = DASHBOARD + "data/"
FLUSH = DASHBOARD + "votes/flush/"
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "admin-backing"}


def k(key: str) -> str:
    """An item key as the stream page's forms send it."""
    return encode_key(key.encode())


def stream_url(name: str, label: str = "main") -> str:
    return reverse("admin:django_fence_stream", args=(label, name))


def expire_url(label: str = "main") -> str:
    return reverse("admin:django_fence_expire", args=(label,))


def user(*perms: str, staff: bool = True, active: bool = True) -> User:
    account = User.objects.create_user(f"u{uuid.uuid4().hex[:8]}", password="pw", is_staff=staff, is_active=active)
    for codename in perms:
        account.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="django_fence"))
    return account


def logged_in(account: User) -> Client:
    client = Client()
    client.force_login(account)
    return client


@pytest.fixture
def operator() -> Client:
    return logged_in(user("view_fence", "change_fence"))


@pytest.fixture
def viewer() -> Client:
    return logged_in(user("view_fence"))


@pytest.fixture
def streams(settings: Any, redis_client: Any, redis_url: str) -> Iterator[Streams]:
    """Streams on the suite's Redis, configured as the admin's server "main"; a LocMem fence."""
    settings.CACHES = {**fenced_caches(LOCMEM), "votes": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                                          "LOCATION": "admin-votes"}}
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2, "STREAMS_REDIS": {"main": redis_url}}
    caches["default"].reset_stats()
    yield Streams(redis_client)


@pytest.fixture
def jobs(streams: Streams) -> Streams:
    """A stream "jobs": a..e with priorities 5..1, "d" excluded and "a" pulled without purge."""
    items = zip("abcde", (5, 4, 3, 2, 1), strict=True)
    streams.psaddmany("jobs", [(key, f"value of {key}", score) for key, score in items])
    streams.client.sadd("jobs:exc", "d")
    streams.pspull("jobs", 1, purge=False)  # "a" leaves the top: priority -1, blocked for a day
    return streams


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def keys_in_order(response: Any) -> list[str]:
    return re.findall(r'<tr class="fence-item" data-key="([^"]*)"', response.content.decode())


def priorities(streams: Streams, name: str = "jobs") -> dict[str, float]:
    return {key.decode(): score for key, score in streams.pskeys(name, withscores=True)}


def last_log() -> LogEntry:
    return LogEntry.objects.order_by("-pk").first()  # type: ignore[return-value]


# -- who sees what -------------------------------------------------------------------------------------
def test_the_admin_index_has_a_fence_section_linking_to_the_dashboard(viewer: Client, streams: Streams) -> None:
    page = viewer.get("/admin/").content.decode()
    assert 'href="/admin/django_fence/"' in page and f'href="{DASHBOARD}"' in page


def test_staff_without_the_permission_see_no_fence_section_and_get_403(streams: Streams) -> None:
    client = logged_in(user())
    assert DASHBOARD not in client.get("/admin/").content.decode()
    assert client.get(DASHBOARD).status_code == 403
    assert client.get(DATA).status_code == 403
    assert client.get(stream_url("jobs")).status_code == 403


@pytest.mark.parametrize("account", [lambda: None, lambda: user("view_fence", active=False),
                                     lambda: user("view_fence", staff=False)])
def test_anonymous_inactive_and_non_staff_users_are_sent_to_the_login_page(streams: Streams, account: Any) -> None:
    who = account()
    client = Client() if who is None else logged_in(who)
    for url in (DASHBOARD, DATA, stream_url("jobs")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_view_only_user_sees_the_numbers_and_no_action_button(viewer: Client, jobs: Streams) -> None:
    dashboard = viewer.get(DASHBOARD).content.decode()
    stream = viewer.get(stream_url("jobs")).content.decode()
    assert "Streams on main" in dashboard and 'href="/admin/django_fence/fence/streams/main/stream/jobs"' in dashboard
    for page in (dashboard, stream):
        assert 'name="action"' not in page and 'name="delete-keys"' not in page
        for label in ("Run expiry now", "Flush now", "Change", "Delete", "Pull", "Decrement"):
            assert f'value="{label}' not in page


def test_an_operator_sees_every_action(operator: Client, jobs: Streams) -> None:
    dashboard = operator.get(DASHBOARD).content.decode()
    stream = operator.get(stream_url("jobs")).content.decode()
    assert "Run expiry now" in dashboard and "Flush now" in dashboard
    for label in ("Change", "Delete selected items", "Delete below a threshold", "Decrement all priorities",
                  "Pull items", "Delete the stream", "Run expiry now"):
        assert f'value="{label}' in stream


FORGED = [
    ("bump", {"bump-key": k("b"), "bump-by": "10"}),
    ("delete", {"delete-keys": [k("b")], "confirmed": "yes"}),
    ("delete_below", {"delete_below-threshold": "10", "confirmed": "yes"}),
    ("decrement_all", {"decrement_all-by": "1", "confirmed": "yes"}),
    ("pull", {"pull-count": "3", "pull-purge": "on", "confirmed": "yes"}),
    ("delete_stream", {"confirmed": "yes"}),
]


@pytest.mark.parametrize(("action", "data"), FORGED)
def test_a_forged_post_from_a_view_only_user_is_refused_and_changes_nothing(
        viewer: Client, jobs: Streams, action: str, data: dict[str, Any]) -> None:
    before = priorities(jobs), jobs.psvalues("jobs")
    assert viewer.post(stream_url("jobs"), {"action": action, **data}).status_code == 403
    assert (priorities(jobs), jobs.psvalues("jobs")) == before
    assert not LogEntry.objects.exists()


def test_forged_expiry_and_flush_from_a_view_only_user_are_refused(viewer: Client, jobs: Streams) -> None:
    assert viewer.post(expire_url()).status_code == 403
    assert viewer.post(FLUSH).status_code == 403
    assert not LogEntry.objects.exists()


def test_actions_are_post_only(operator: Client, jobs: Streams) -> None:
    assert operator.get(expire_url()).status_code == 405
    assert operator.get(FLUSH).status_code == 405


def test_actions_need_the_csrf_token(jobs: Streams) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user("view_fence", "change_fence"))
    assert client.post(stream_url("jobs"), {"action": "bump", "bump-key": k("b"), "bump-by": "10"}).status_code == 403
    assert client.post(expire_url()).status_code == 403
    assert priorities(jobs)["b"] == 4


# -- the dashboard -------------------------------------------------------------------------------------
def test_the_dashboard_shows_each_fenced_alias_its_streams_and_the_vote_queue(viewer: Client, jobs: Streams) -> None:
    cache = caches["default"]
    cache.get_or_set("k", "v", 60)
    cache.get_or_set("k", "v", 60)
    page = viewer.get(DASHBOARD).content.decode()
    row = re.search(r'<tr data-alias="default">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = dict(re.findall(r'data-counter="(\w+)">([^<]*)<', row.group(1)))
    assert cells["hits"] == "1" and cells["misses"] == "1" and cells["recomputes"] == "1"
    assert cells["hit_ratio"].startswith("50")
    assert "<svg" in row.group(1)  # the last hour's chart
    stream = re.search(r'<tr data-stream="jobs">(.*?)</tr>', page, re.S)
    assert stream is not None
    assert re.findall(r"<td>([^<]*)</td>", stream.group(1)) == ["5", "b", "4", "1", "1"]
    assert "Vote queue" in page


def test_every_dashboard_view_is_never_cached(viewer: Client, jobs: Streams) -> None:
    for url in (DASHBOARD, DATA, stream_url("jobs")):
        control = viewer.get(url)["Cache-Control"]
        assert "no-cache" in control and "no-store" in control


def test_the_dashboard_is_right_under_the_fenced_cache_middleware(viewer: Client, jobs: Streams,
                                                                  settings: Any) -> None:
    settings.MIDDLEWARE = ["django_fence.middleware.FencedCacheMiddleware", *settings.MIDDLEWARE]
    settings.CACHE_MIDDLEWARE_ALIAS = "default"
    first = viewer.get(DATA).json()
    jobs.psadd("jobs", "z", "new", 100)
    assert "z" in viewer.get(stream_url("jobs")).content.decode()
    second = viewer.get(DATA).json()
    assert first["digest"] != second["digest"]
    assert second["numbers"]["servers"]["main"]["streams"][0]["top_key"] == "z"


def test_the_json_endpoint_gives_numbers_panels_and_a_digest_that_moves_only_with_them(
        viewer: Client, jobs: Streams) -> None:
    first = viewer.get(DATA).json()
    assert set(first) == {"digest", "numbers", "panels"}
    assert set(first["panels"]) == {"fence", "streams", "queue"}
    assert set(first["numbers"]) == {"aliases", "servers", "queue"}
    assert viewer.get(DATA).json()["digest"] == first["digest"]
    jobs.psincrement("jobs", "e", 1)  # not shown on the dashboard: the digest stays
    assert viewer.get(DATA).json()["digest"] == first["digest"]
    jobs.psadd("jobs", "f", "new", 1)  # the stream's length is shown
    assert viewer.get(DATA).json()["digest"] != first["digest"]


def test_the_refresh_interval_is_a_setting(viewer: Client, jobs: Streams, settings: Any) -> None:
    settings.DJANGO_FENCE = {**settings.DJANGO_FENCE, "ADMIN_REFRESH_INTERVAL": 12.5, "ADMIN_REFRESH_MAX_FACTOR": 4}
    page = viewer.get(DASHBOARD).content.decode()
    assert 'data-interval="12.5"' in page and 'data-max-factor="4"' in page
    assert "django_fence/dashboard.js" in page


def test_a_redis_that_is_down_gives_an_error_panel_not_a_500(viewer: Client, streams: Streams,
                                                            settings: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"gone": "redis://127.0.0.1:1/0"}}
    response = viewer.get(DASHBOARD)
    assert response.status_code == 200
    assert 'class="errornote">Redis gone cannot be read: BackendUnavailable' in response.content.decode()
    page = viewer.get(stream_url("jobs", "gone"))
    assert page.status_code == 503 and "Redis gone cannot be read" in page.content.decode()
    assert viewer.get(DATA).json()["numbers"]["servers"]["gone"]["error"].startswith("BackendUnavailable")


def test_a_streams_alias_that_is_not_redis_gives_an_error_panel(viewer: Client, streams: Streams,
                                                               settings: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"mem": "votes"}}
    assert "which is not a Redis cache" in viewer.get(DASHBOARD).content.decode()


@pytest.mark.parametrize("backend", ["django.core.cache.backends.redis.RedisCache",
                                     "django_redis.cache.RedisCache"])
def test_streams_can_be_named_by_a_redis_cache_alias(viewer: Client, jobs: Streams, settings: Any,
                                                     redis_url: str, backend: str) -> None:
    settings.CACHES = {**settings.CACHES, "redis": {"BACKEND": backend, "LOCATION": redis_url}}
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"main": "redis"}}
    assert keys_in_order(viewer.get(stream_url("jobs"))) == ["b", "c", "d", "e", "a"]


def test_a_dashboard_without_stream_servers_says_how_to_configure_one(viewer: Client, settings: Any) -> None:
    settings.DJANGO_FENCE = {}
    assert 'DJANGO_FENCE["STREAMS_REDIS"]' in viewer.get(DASHBOARD).content.decode().replace("&quot;", '"')


# -- a stream page -------------------------------------------------------------------------------------
def test_a_stream_page_lists_items_by_priority_with_their_values_and_marks(viewer: Client, jobs: Streams) -> None:
    response = viewer.get(stream_url("jobs"))
    assert keys_in_order(response) == ["b", "c", "d", "e", "a"]
    page = response.content.decode()
    row = {key: re.search(rf'data-key="{key}">(.*?)</tr>', page, re.S).group(1) for key in "abd"}  # type: ignore[union-attr]
    assert "value of b" in row["b"] and ">4<" in row["b"]
    assert "excluded" in row["d"] and "pulled, expires" in row["a"] and ">-1<" in row["a"]
    assert "5 items &middot; 1 excluded &middot; 1 expiring" in page


def test_names_keys_and_values_are_escaped(operator: Client, streams: Streams) -> None:
    evil = "<script>alert(1)</script>"
    streams.psadd(evil, evil, evil, 1)
    for page in (operator.get(DASHBOARD).content.decode(), operator.get(stream_url(evil)).content.decode()):
        assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_long_value_is_truncated_and_shown_whole_on_click(viewer: Client, streams: Streams) -> None:
    long = "x" * 200 + "END"
    streams.psadd("s", "k", long, 1)
    page = viewer.get(stream_url("s")).content.decode()
    assert re.search(r"<details><summary>x{79}…</summary><pre>x{200}END</pre></details>", page)


def test_pages_and_a_key_prefix_search(viewer: Client, streams: Streams, settings: Any) -> None:
    settings.DJANGO_FENCE = {**settings.DJANGO_FENCE, "ADMIN_PAGE_SIZE": 10}
    streams.psaddmany("big", [(f"item-{i:03}", "v", i) for i in range(25)] + [("a*b", "v", 100)])
    assert keys_in_order(viewer.get(stream_url("big"))) == ["a*b"] + [f"item-{i:03}" for i in range(24, 15, -1)]
    assert keys_in_order(viewer.get(stream_url("big"), {"p": 3})) == [f"item-{i:03}" for i in range(5, -1, -1)]
    assert keys_in_order(viewer.get(stream_url("big"), {"p": "junk"}))[0] == "a*b"  # a bad page number: page 1
    assert keys_in_order(viewer.get(stream_url("big"), {"q": "item-01"})) == [f"item-{i:03}" for i in range(19, 9, -1)]
    third = [f"item-{i:03}" for i in range(4, -1, -1)]
    assert keys_in_order(viewer.get(stream_url("big"), {"q": "item-0", "p": 3})) == third
    assert keys_in_order(viewer.get(stream_url("big"), {"p": 99}))[-1] == "item-000"  # past the end: the last page
    assert keys_in_order(viewer.get(stream_url("big"), {"q": "a*"})) == ["a*b"]  # glob characters match themselves
    assert keys_in_order(viewer.get(stream_url("big"), {"q": "*"})) == []
    assert "No item's key starts with nothing-" in viewer.get(stream_url("big"), {"q": "nothing-"}).content.decode()


def test_the_first_page_of_a_huge_stream_costs_a_few_commands(viewer: Client, streams: Streams,
                                                             redis_client: Any) -> None:
    streams.psaddmany("huge", [(f"k{i}", "v", i) for i in range(100_000)])
    redis_client.config_resetstat()
    response = viewer.get(stream_url("huge"))
    assert keys_in_order(response)[:2] == ["k99999", "k99998"] and len(keys_in_order(response)) == 100
    commands = sum(int(stats["calls"]) for name, stats in redis_client.info("commandstats").items()
                   if not name.endswith(("info", "config")))
    assert commands <= 10


def test_unknown_streams_and_servers_are_404(viewer: Client, operator: Client, jobs: Streams) -> None:
    assert viewer.get(stream_url("nope")).status_code == 404
    assert viewer.get(stream_url("jobs", "other")).status_code == 404
    assert operator.post(stream_url("nope"), {"action": "delete_stream", "confirmed": "yes"}).status_code == 404
    assert operator.post(expire_url("other")).status_code == 404


def test_a_stream_name_with_slashes_and_spaces_has_its_page(viewer: Client, streams: Streams) -> None:
    streams.psadd("a/b c?d#", "k", "v", 1)
    assert keys_in_order(viewer.get(stream_url("a/b c?d#"))) == ["k"]


# -- actions ---------------------------------------------------------------------------------------------
def test_change_priority_moves_the_item_reports_it_and_logs_it(operator: Client, jobs: Streams) -> None:
    response = operator.post(stream_url("jobs"), {"action": "bump", "bump-key": k("e"), "bump-by": "10"})
    assert response.status_code == 302 and response["Location"] == stream_url("jobs")
    assert priorities(jobs)["e"] == 11
    assert messages_of(response) == ["Stream 'jobs': Changed the priority of 'e' by +10; it is now 11."]
    entry = last_log()
    assert entry.user.has_perm("django_fence.change_fence") and entry.action_flag == CHANGE
    assert (entry.object_id, entry.object_repr) == ("main:jobs", "stream jobs on main")
    assert entry.change_message == "Change priority: Changed the priority of 'e' by +10; it is now 11."
    assert keys_in_order(operator.get(stream_url("jobs")))[0] == "e"


@pytest.mark.parametrize(("data", "error"), [
    ({"bump-key": k("e"), "bump-by": "ten"}, "Change priority: Change by: Enter a number."),
    ({"bump-key": k("e"), "bump-by": "nan"}, "Change priority: Change by: Enter a number."),
    ({"bump-key": k("e"), "bump-by": "0"}, "Change priority: Change by: Change by 0 changes nothing."),
    ({"bump-key": k("e")}, "Change priority: Change by: This field is required."),
    ({"bump-key": k("zzz"), "bump-by": "1"}, "Change priority: The stream has no item 'zzz'."),
])
def test_bad_input_to_change_priority_is_reported_and_changes_nothing(
        operator: Client, jobs: Streams, data: dict[str, str], error: str) -> None:
    before = priorities(jobs)
    response = operator.post(stream_url("jobs"), {"action": "bump", **data})
    assert response.status_code == 302 and messages_of(response) == [error]
    assert priorities(jobs) == before and not LogEntry.objects.exists()


def test_an_unknown_action_is_reported(operator: Client, jobs: Streams) -> None:
    response = operator.post(stream_url("jobs"), {"action": "explode"})
    assert messages_of(response) == ["Unknown action."]


def confirm(client: Client, url: str, data: dict[str, Any], expect: str) -> Any:
    """POST an action, check its confirmation page says ``expect`` and changed nothing, then confirm it."""
    page = client.post(url, data)
    assert page.status_code == 200 and "Are you sure?" in page.content.decode()
    assert expect in page.content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.content.decode()))
    assert hidden["confirmed"] == "yes" and hidden["action"] == data["action"]
    fields = {name: re.findall(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"',
                               page.content.decode()) for name in hidden if name != "csrfmiddlewaretoken"}
    return client.post(url, fields)


def test_delete_items_confirms_first_then_deletes_them(operator: Client, jobs: Streams) -> None:
    data = {"action": "delete", "delete-keys": [k("b"), k("e")]}
    before = priorities(jobs)
    response = confirm(operator, stream_url("jobs"), data, "Delete 2 item(s): b, e.")
    assert priorities(jobs) == {k: v for k, v in before.items() if k not in "be"}
    assert "b" not in jobs.psvalues("jobs")
    assert messages_of(response) == ["Stream 'jobs': Deleted 2 of 2 chosen item(s): b, e."]
    assert last_log().change_message == "Delete selected items: Deleted 2 of 2 chosen item(s): b, e."


def test_delete_items_without_a_choice_is_an_error(operator: Client, jobs: Streams) -> None:
    response = operator.post(stream_url("jobs"), {"action": "delete"})
    assert messages_of(response) == ["Delete selected items: Keys: Choose at least one item."]


def test_delete_below_a_threshold_with_the_gate(operator: Client, jobs: Streams) -> None:
    data = {"action": "delete_below", "delete_below-threshold": "3", "delete_below-gate": "on"}
    before = priorities(jobs)
    response = confirm(operator, stream_url("jobs"), data,
                       "Delete the 4 item(s) with a priority at or below 3 and keep their keys from being added again.")
    assert priorities(jobs) == {"b": before["b"]}
    assert jobs.client.smembers("jobs:exc") == {b"a", b"c", b"d", b"e"}
    assert messages_of(response) == ["Stream 'jobs': Deleted 4 item(s) with a priority at or below 3, their keys "
                                     "excluded from being added again: a, e, d, c."]


def test_a_missing_threshold_is_an_error_not_a_confirmation(operator: Client, jobs: Streams) -> None:
    response = operator.post(stream_url("jobs"), {"action": "delete_below", "delete_below-threshold": "low"})
    assert response.status_code == 302
    assert messages_of(response) == ["Delete below a threshold: Threshold: Enter a number."]


def test_decrement_all(operator: Client, jobs: Streams) -> None:
    before = priorities(jobs)
    response = confirm(operator, stream_url("jobs"), {"action": "decrement_all", "decrement_all-by": "2"},
                       "Subtract 2 from the priority of all 5 item(s).")
    assert priorities(jobs) == {key: score - 2 for key, score in before.items()}
    assert messages_of(response) == ["Stream 'jobs': Subtracted 2 from the priority of 5 item(s)."]


@pytest.mark.parametrize(("extra", "expect", "kept", "excluded"), [
    ({"pull-purge": "on"}, "Pull the 2 item(s) of highest priority and remove them.", {"d", "e", "a"}, {"d"}),
    ({"pull-purge": "on", "pull-gate": "on"}, "remove them, keeping their keys from being added again.",
     {"d", "e", "a"}, {"b", "c", "d"}),
    ({}, "keep them, blocked for a day.", {"b", "c", "d", "e", "a"}, {"d"}),
])
def test_pull_n_items(operator: Client, jobs: Streams, extra: dict[str, str], expect: str, kept: set[str],
                      excluded: set[str]) -> None:
    response = confirm(operator, stream_url("jobs"), {"action": "pull", "pull-count": "2", **extra}, expect)
    assert set(priorities(jobs)) == kept
    assert {key.decode() for key in jobs.client.smembers("jobs:exc")} == excluded
    assert messages_of(response) == ["Stream 'jobs': Pulled 2 item(s): b, c."]


@pytest.mark.parametrize(("data", "error"), [
    ({"pull-count": "0", "pull-purge": "on"}, "Pull items: Count: Ensure this value is greater than or equal to 1."),
    ({"pull-count": "two"}, "Pull items: Count: Enter a whole number."),
    ({"pull-count": "1", "pull-gate": "on"}, "Pull items: Gate applies only to purged items: tick purge too, "
                                             "or untick gate."),
])
def test_bad_input_to_pull_changes_nothing(operator: Client, jobs: Streams, data: dict[str, str], error: str) -> None:
    before = priorities(jobs)
    response = operator.post(stream_url("jobs"), {"action": "pull", "confirmed": "yes", **data})
    assert messages_of(response) == [error] and priorities(jobs) == before


def test_delete_the_stream(operator: Client, jobs: Streams) -> None:
    response = confirm(operator, stream_url("jobs"), {"action": "delete_stream"},
                       "Delete the stream and all its 5 item(s), and remove it from the registry.")
    assert response["Location"] == DASHBOARD
    assert jobs.psnames() == set() and jobs.pslen("jobs") == 0
    assert messages_of(response) == ["Stream 'jobs': Deleted the stream."]


def test_run_expiry_now(operator: Client, jobs: Streams) -> None:
    jobs.pspull("jobs", 1, purge=False, expire_at=__import__("datetime").timedelta(seconds=-10))
    response = operator.post(expire_url(), {"next": stream_url("jobs")})
    assert response["Location"] == stream_url("jobs")
    assert messages_of(response) == ["Streams on 'main': ran expiry on every stream: removed 1 expired item(s)."]
    assert "b" not in priorities(jobs)
    assert last_log().object_repr == "streams on main"


def test_run_expiry_sends_you_back_only_inside_the_admin(operator: Client, jobs: Streams) -> None:
    assert operator.post(expire_url(), {"next": "https://evil.example/"})["Location"] == DASHBOARD


def test_an_action_while_redis_is_down_is_an_error_page_not_a_500(operator: Client, streams: Streams,
                                                                  settings: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"main": "redis://127.0.0.1:1/0"}}
    response = operator.post(stream_url("jobs"), {"action": "bump", "bump-key": k("a"), "bump-by": "1"})
    assert response.status_code == 302 and response["Location"] == stream_url("jobs")  # no page a reload posts again
    assert messages_of(response)[0].startswith("Redis 'main' is unreachable; nothing was done: ConnectionError")
    response = operator.post(expire_url())
    assert response.status_code == 302 and messages_of(response)[0].startswith("Redis 'main' is unreachable")


# -- the vote queue --------------------------------------------------------------------------------------
@pytest.fixture
def queued_poll(settings: Any, memcached_location: str) -> Any:
    from django_fence.polls.models import Question
    from tests.conftest import flush

    flush("pylibmc", memcached_location)
    settings.CACHES = poll_caches(memcached_location)
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2}
    question = Question.objects.create(question_text="Which one?")
    for i in range(3):
        question.choices.create(choice_text=f"choice {i}")
    yield question
    caches["votes"].close()


def test_the_dashboard_shows_the_queue_depth_and_flush_now_applies_it(operator: Client, queued_poll: Any) -> None:
    vote(queued_poll, 7)
    page = operator.get(DASHBOARD).content.decode()
    assert re.search(r'data-queue="depth">7<', page) and re.search(r'data-queue="last_flush">never<', page)
    response = operator.post(FLUSH)
    assert response["Location"] == DASHBOARD
    assert messages_of(response)[0] == "Applied 7 vote(s) to 1 question(s) in " + \
        messages_of(response)[0].split(" in ")[1]
    assert sum(totals(queued_poll)) == 7
    assert last_log().object_repr == "vote queue"
    page = operator.get(DASHBOARD).content.decode()
    assert re.search(r'data-queue="depth">0<', page) and re.search(r'data-queue="applied">7<', page)


def test_the_queue_panel_shows_an_error_when_memcached_is_down(operator: Client, queued_poll: Any,
                                                              settings: Any) -> None:
    settings.CACHES = poll_caches("127.0.0.1:1")
    page = operator.get(DASHBOARD)
    assert page.status_code == 200 and "The vote queue cannot be read" in page.content.decode()
    response = operator.post(FLUSH)
    assert response.status_code == 302 and messages_of(response)[0].startswith("The vote queue is unreachable")


def test_the_dashboard_lists_the_recent_actions_from_the_admin_log(operator: Client, jobs: Streams) -> None:
    operator.post(stream_url("jobs"), {"action": "bump", "bump-key": k("e"), "bump-by": "2"})
    page = operator.get(DASHBOARD).content.decode()
    recent = page[page.index("<caption>Recent actions</caption>"):]
    assert "stream jobs on main" in recent and "Changed the priority of &#x27;e&#x27; by +2; it is now 3." in recent


def test_a_votes_alias_missing_from_caches_gives_a_queue_error_panel(viewer: Client, streams: Streams,
                                                                    settings: Any) -> None:
    settings.CACHES = {alias: config for alias, config in settings.CACHES.items() if alias != "votes"}
    page = viewer.get(DASHBOARD)
    assert page.status_code == 200
    assert "The vote queue cannot be read: InvalidCacheBackendError" in page.content.decode()


@pytest.mark.parametrize(("action", "data"), [(a, d) for a, d in FORGED if a != "bump"])
def test_a_destructive_action_without_confirmation_only_asks(operator: Client, jobs: Streams, action: str,
                                                             data: dict[str, Any]) -> None:
    unconfirmed = {key: value for key, value in data.items() if key != "confirmed"}
    before = priorities(jobs), jobs.psvalues("jobs"), jobs.psnames()
    page = operator.post(stream_url("jobs"), {"action": action, **unconfirmed})
    assert page.status_code == 200 and "Are you sure?" in page.content.decode()
    assert (priorities(jobs), jobs.psvalues("jobs"), jobs.psnames()) == before
    assert not LogEntry.objects.exists()
    confirmed = operator.post(stream_url("jobs"), {"action": action, **data})
    assert confirmed.status_code == 302 and LogEntry.objects.count() == 1


def test_the_digest_leaves_out_what_moves_with_the_clock_alone() -> None:
    from django_fence.admin import digest

    def numbers(minute: int, lag: float, hits: int) -> dict[str, Any]:
        point = {"minute": minute, "hits": hits, "stale_served": 0, "misses": 0, "recomputes": 0, "hit_ratio": 1.0}
        return {"aliases": {"default": {"hits": hits, "history": {"points": [point]}}}, "servers": {},
                "queue": {"depth": 3, "lag_seconds": lag}}

    assert digest(numbers(60, 1.0, 5)) == digest(numbers(120, 9.5, 5))
    assert digest(numbers(60, 1.0, 5)) != digest(numbers(60, 1.0, 6))
    error = {"aliases": {"default": {"error": "down", "history": {"error": "down"}}}, "servers": {}, "queue": None}
    assert digest(error) == digest(copy.deepcopy(error))


def test_a_waiting_backlog_does_not_change_the_digest_while_its_lag_grows(viewer: Client, queued_poll: Any) -> None:
    from django_fence.polls.flush import flush_votes

    vote(queued_poll, 2)
    flush_votes()
    vote(queued_poll, 3)
    first = viewer.get(DATA).json()
    time.sleep(1.1)  # the lag is the time since the last flush: it has to pass
    second = viewer.get(DATA).json()
    assert second["numbers"]["queue"]["lag_seconds"] > first["numbers"]["queue"]["lag_seconds"] + 1
    assert second["numbers"]["queue"]["depth"] == 3 and second["digest"] == first["digest"]
    assert 'class="fence-since" data-since=' in second["panels"]["queue"]  # the page counts it up itself



def test_registered_names_other_clients_wrote_do_not_break_the_dashboard(operator: Client, streams: Streams) -> None:
    streams.client.sadd(":ps:keys", "", b"bad\xff", "line\nbreak")
    streams.psadd("line\nbreak", "k", "v", 1)
    page = operator.get(DASHBOARD)
    assert page.status_code == 200 and operator.get(DATA).status_code == 200
    text = page.content.decode()
    assert "(empty)</th><td colspan=\"5\" class=\"quiet\">Registered, but a stream name may not be empty" in text
    assert "bad\\xff</th><td colspan=\"5\" class=\"quiet\">Registered, but not UTF-8" in text
    assert keys_in_order(operator.get(stream_url("line\nbreak"))) == ["k"]
    assert stream_url("line\nbreak") in text


def test_keys_with_line_breaks_are_acted_on_exactly(operator: Client, streams: Streams) -> None:
    streams.psaddmany("s", [("a\r\nb", "1", 1), ("a\nb", "2", 2), ("plain", "3", 3)])
    page = operator.get(stream_url("s")).content.decode()
    crlf, lf = k("a\r\nb"), k("a\nb")
    assert f'value="{crlf}"' in page and f'value="{lf}"' in page
    response = operator.post(stream_url("s"), {"action": "bump", "bump-key": k("a\r\nb"), "bump-by": "10"})
    assert messages_of(response) == ["Stream 's': Changed the priority of 'a\\r\\nb' by +10; it is now 11."]
    operator.post(stream_url("s"), {"action": "delete", "delete-keys": [k("a\nb")], "confirmed": "yes"})
    assert priorities(streams, "s") == {"a\r\nb": 11, "plain": 3}


def test_a_key_that_is_not_utf8_is_shown_but_offers_no_action(operator: Client, streams: Streams) -> None:
    streams.psadd("s", "ok", "v", 1)
    streams.client.zadd("s:s", {b"k\xfe": 5})
    streams.client.hset("s:t", b"k\xfe", "v")
    page = operator.get(stream_url("s")).content.decode()
    assert keys_in_order(operator.get(stream_url("s"))) == ["k\\xfe", "ok"]
    assert page.count('name="delete-keys"') == 1 and "no action</span>" in page


@pytest.mark.parametrize("token", ["not base64!", "//79", "", "ZQ!!", "Z Q=="])
def test_a_key_token_that_is_not_one_of_the_page_is_an_error(operator: Client, jobs: Streams, token: str) -> None:
    before = priorities(jobs)
    response = operator.post(stream_url("jobs"), {"action": "bump", "bump-key": token, "bump-by": "1"})
    assert messages_of(response)[0].startswith("Change priority: Key: ")
    assert priorities(jobs) == before


def test_a_truncated_prefix_search_keeps_the_matches_of_highest_priority(viewer: Client, streams: Streams,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from django_fence import dashboard

    monkeypatch.setattr(dashboard, "MAX_MATCHES", 5)
    streams.psaddmany("big", [(f"m{i:02}", "v", i) for i in range(40)] + [("other", "v", 99)])
    response = viewer.get(stream_url("big"), {"q": "m"})
    assert keys_in_order(response) == ["m39", "m38", "m37", "m36", "m35"]
    assert "the 5 of highest priority of 40" in response.content.decode()


def test_an_action_comes_back_to_the_search_and_page_it_was_made_on(operator: Client, jobs: Streams) -> None:
    data = {"action": "bump", "bump-key": k("e"), "bump-by": "1", "_filters": "q=e&p=1&evil=1"}
    assert operator.post(stream_url("jobs"), data)["Location"] == stream_url("jobs") + "?q=e&p=1"
    page = operator.post(stream_url("jobs"), {"action": "delete_stream", "_filters": "q=e"}).content.decode()
    assert f'href="{stream_url("jobs")}?q=e" class="button cancel-link"' in page
    assert 'name="_filters" value="q=e"' in page
    listing = operator.get(stream_url("jobs"), {"q": "e"}).content.decode()
    assert 'name="_filters" value="q=e"' in listing


def test_flush_now_with_the_votes_alias_missing_is_a_message_not_a_500(operator: Client, streams: Streams,
                                                                       settings: Any) -> None:
    settings.CACHES = {alias: config for alias, config in settings.CACHES.items() if alias != "votes"}
    assert "Flush now" not in operator.get(DASHBOARD).content.decode()
    response = operator.post(FLUSH)
    assert response.status_code == 302 and messages_of(response)[0].startswith("The vote queue cannot be flushed")


def test_streams_on_a_redis_cluster(operator: Client, redis_cluster_client: Any,
                                    redis_cluster_nodes: list[tuple[str, int]], settings: Any) -> None:
    host, port = redis_cluster_nodes[0]
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"cluster": f"redis+cluster://{host}:{port}/0"}}
    cluster = Streams(redis_cluster_client)
    cluster.psaddmany("jobs", [("a", "1", 1), ("b", "2", 2)])
    cluster.psaddmany("other", [("x", "1", 1)])
    assert '<tr data-stream="jobs">' in operator.get(DASHBOARD).content.decode()
    url = stream_url("jobs", "cluster")
    assert keys_in_order(operator.get(url)) == ["b", "a"]
    assert keys_in_order(operator.get(url, {"q": "a"})) == ["a"]
    operator.post(url, {"action": "bump", "bump-key": k("a"), "bump-by": "5"})
    assert keys_in_order(operator.get(url)) == ["a", "b"]
    operator.post(url, {"action": "delete", "delete-keys": [k("b")], "confirmed": "yes"})
    assert cluster.pskeys("jobs") == [b"a"]


def test_the_chart_draws_hit_ratio_with_gaps_and_recomputes_scaled_to_the_busiest_minute() -> None:
    from django_fence.dashboard import CHART_HEIGHT, CHART_WIDTH, chart

    def point(ratio: float | None, recomputes: int) -> dict[str, Any]:
        return {"minute": 0, "hits": 0, "stale_served": 0, "misses": 0, "recomputes": recomputes, "hit_ratio": ratio}

    drawn = chart({"points": [point(1.0, 0), point(0.5, 4), point(None, 2), point(0.0, 0), point(0.25, 1)]})
    assert drawn is not None
    step = CHART_WIDTH / 4
    assert drawn["hit_ratio"] == [f"0.0,0.0 {step:.1f},{CHART_HEIGHT / 2:.1f}",
                                  f"{3 * step:.1f},{CHART_HEIGHT:.1f} {4 * step:.1f},{CHART_HEIGHT * 0.75:.1f}"]
    assert drawn["recomputes"].split()[1] == f"{step:.1f},0.0"  # the busiest minute reaches the top
    assert (drawn["busiest"], drawn["recomputed"], drawn["minutes"]) == (4, 7, 5)
    assert chart({"error": "down"}) is None and chart({"points": []}) is None
    quiet = chart({"points": [point(None, 0), point(None, 0)]})
    assert quiet is not None and quiet["hit_ratio"] == [] and quiet["busiest"] == 0


def test_a_decrement_of_zero_is_an_error(operator: Client, jobs: Streams) -> None:
    before = priorities(jobs)
    response = operator.post(stream_url("jobs"), {"action": "decrement_all", "decrement_all-by": "0"})
    assert messages_of(response) == ["Decrement all priorities: Decrement by: Decrement by 0 changes nothing."]
    assert priorities(jobs) == before



@pytest.mark.parametrize("name", ["..", ".", "a/../b", "a//b", "./x", "100%", "%2F"])
def test_stream_names_that_look_like_paths_keep_their_own_page(viewer: Client, streams: Streams, name: str) -> None:
    streams.psadd(name, "mine", "v", 1)
    streams.psadd("b", "other", "v", 1)
    url = stream_url(name)
    tail = url.split("/stream/", 1)[1]
    assert "/" not in tail and tail not in (".", "..")  # one segment, never a dot segment a browser resolves
    assert keys_in_order(viewer.get(url)) == ["mine"]


def test_a_cluster_that_is_down_is_an_error_page_or_message_not_a_500(operator: Client, streams: Streams,
                                                                       settings: Any) -> None:
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"gone": "redis+cluster://127.0.0.1:1"}}
    assert "Redis gone cannot be read" in operator.get(DASHBOARD).content.decode()
    assert operator.get(stream_url("jobs", "gone")).status_code == 503
    response = operator.post(stream_url("jobs", "gone"), {"action": "delete_stream", "confirmed": "yes"})
    assert response.status_code == 302 and "is unreachable; nothing was done" in messages_of(response)[0]
    response = operator.post(expire_url("gone"))
    assert response.status_code == 302 and messages_of(response)[0].startswith("Redis 'gone' is unreachable")


def test_an_error_after_the_action_was_sent_says_the_outcome_is_unknown_and_logs_it(
        operator: Client, jobs: Streams, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    def timed_out(self: Any, name: str, decrement: float) -> int:
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(Streams, "psdecrement_all", timed_out)
    response = operator.post(stream_url("jobs"), {"action": "decrement_all", "decrement_all-by": "1",
                                                  "confirmed": "yes"})
    assert messages_of(response) == [
        "Stream 'jobs': Decrement all priorities: the outcome is unknown (TimeoutError: Timeout reading from "
        "socket); look at the stream before trying again."]
    assert last_log().change_message.startswith("Decrement all priorities: the outcome is unknown")


def test_the_admin_log_gets_no_nul_from_a_name_or_key(operator: Client, streams: Streams) -> None:
    streams.psadd("n\x00ul", "k\x00ey", "v", 1)
    operator.post(stream_url("n\x00ul"), {"action": "delete", "delete-keys": [k("k\x00ey")], "confirmed": "yes"})
    entry = last_log()
    assert "\x00" not in entry.object_id + entry.object_repr + entry.change_message
    assert entry.object_repr == "stream n\\x00ul on main" and "k\\x00ey" in entry.change_message


def test_a_name_cluster_mode_cannot_tag_is_listed_without_a_page(operator: Client, redis_cluster_client: Any,
                                                                 redis_cluster_nodes: list[tuple[str, int]],
                                                                 settings: Any) -> None:
    host, port = redis_cluster_nodes[0]
    settings.DJANGO_FENCE = {"STREAMS_REDIS": {"cluster": f"redis+cluster://{host}:{port}"}}
    redis_cluster_client.sadd(":ps:keys", "}odd")
    page = operator.get(DASHBOARD)
    assert page.status_code == 200
    assert "}odd</th><td colspan=\"5\" class=\"quiet\">Registered, but stream name" in page.content.decode()
