"""The site-wide middleware pair, through Django's full request handler, beside Django's own pair."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from django.core import checks
from django.test import AsyncClient, Client

from tests import views
from tests.test_stampede import in_threads
from tests.workers import run_in_processes

pytestmark = pytest.mark.timeout(120)

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
LOCALE = "django.middleware.locale.LocaleMiddleware"
DJANGO_PAIR = ["django.middleware.cache.UpdateCacheMiddleware", SESSION, LOCALE,
               "django.middleware.cache.FetchFromCacheMiddleware"]
FENCED_PAIR = ["django_fence.middleware.FencedUpdateCacheMiddleware", SESSION, LOCALE,
               "django_fence.middleware.FencedFetchFromCacheMiddleware"]


@pytest.fixture
def site(fenced_on: dict[str, Any], settings: Any) -> Any:
    settings.CACHE_MIDDLEWARE_SECONDS = 60
    settings.LANGUAGES = [("en", "English"), ("fr", "French"), ("de", "German")]
    settings.USE_I18N = True
    views.RENDERS.clear()
    return settings


def use(settings: Any, middleware: list[str], alias: str) -> None:
    settings.MIDDLEWARE = middleware
    settings.CACHE_MIDDLEWARE_ALIAS = alias


# (path, Accept-Language, session user or None)
VISITS = [
    ("/site/plain/", "en", None), ("/site/plain/", "en", None), ("/site/plain/", "fr", None),
    ("/site/plain/", "de", None), ("/site/plain/", "fr", None), ("/site/plain/?q=1", "en", None),
    ("/site/session/", "en", "ann"), ("/site/session/", "en", "bob"), ("/site/session/", "en", "ann"),
    ("/site/session/", "en", None),
]


def visit(clients: dict[str | None, Client], path: str, language: str, user: str | None) -> tuple[Any, ...]:
    response = clients[user].get(path, headers={"Accept-Language": language})
    body = response.content.decode().split()
    body[2] = "pid"  # the process id is the same on both sides; keep the body comparable
    return response.status_code, " ".join(body), response.get("Vary"), response.get("Cache-Control")


def sessions(users: list[str | None]) -> dict[str | None, Client]:
    """One client per user, each with its own session cookie (made through the session store)."""
    from django.conf import settings
    from django.contrib.sessions.backends.cache import SessionStore

    clients: dict[str | None, Client] = {}
    for user in users:
        client = Client()
        if user is not None:
            store = SessionStore()
            store["user"] = user
            store.save()
            client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
        clients[user] = client
    return clients


def test_the_pair_behaves_like_djangos_pair(site: Any) -> None:
    site.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    site.SESSION_CACHE_ALIAS = "plain"
    users = [None, "ann", "bob"]
    results = {}
    for name, middleware, alias in (("django", DJANGO_PAIR, "plain"), ("fenced", FENCED_PAIR, "default")):
        use(site, middleware, alias)
        views.RENDERS.clear()
        clients = sessions(users)
        results[name] = ([visit(clients, *v) for v in VISITS], dict(views.RENDERS))
    assert results["fenced"] == results["django"]
    seen, renders = results["fenced"]
    # The language LocaleMiddleware chose is in the key: pages never cross languages.
    assert [s[1].split()[3] for s in seen[:5]] == ["lang=en", "lang=en", "lang=fr", "lang=de", "lang=fr"]
    # The session middleware's Vary: Cookie is in the stored page: each user gets their own.
    assert [s[1].split()[4] for s in seen[6:]] == ["user=ann", "user=bob", "user=ann", "user=-"]
    assert renders == {"plain": 4, "session": 3}


def test_the_pair_renders_once_for_concurrent_requests(site: Any) -> None:
    use(site, FENCED_PAIR, "default")
    results, errors, _ = in_threads(15, lambda: Client().get("/site/slow/"))
    assert not errors
    assert views.RENDERS == {"slow": 1}
    assert {r.content for r in results} == {results[0].content}


def test_the_pair_renders_once_across_processes(site: Any) -> None:
    if site.CACHES["backing"]["BACKEND"].endswith("LocMemCache"):
        pytest.skip("LocMemCache is per process")
    use(site, FENCED_PAIR, "default")
    results = run_in_processes(3, "storm_page", dict(site.CACHES), path="/site/slow/", threads=6,
                               middleware=FENCED_PAIR)
    assert [e for r in results for e in r["errors"]] == []
    assert len({body for r in results for body in r["bodies"]}) == 1


def test_the_pair_on_an_async_stack(site: Any) -> None:
    use(site, ["django_fence.middleware.FencedUpdateCacheMiddleware",
               "django_fence.middleware.FencedFetchFromCacheMiddleware"], "default")

    async def storm() -> list[Any]:
        client = AsyncClient()
        return list(await asyncio.gather(*(client.get("/async-site/a/") for _ in range(10))))

    responses = asyncio.run(storm())
    assert views.RENDERS == {"a": 1}
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1


class SyncOnly:
    """A middleware that only runs sync: between the halves it makes Django run them in different modes."""

    sync_capable, async_capable = True, False

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)


def test_the_pair_with_a_sync_middleware_between_on_an_async_stack(site: Any) -> None:
    use(site, ["django_fence.middleware.FencedUpdateCacheMiddleware", "tests.test_middleware.SyncOnly",
               "django_fence.middleware.FencedFetchFromCacheMiddleware"], "default")

    async def storm() -> list[Any]:
        client = AsyncClient()
        return list(await asyncio.gather(*(client.get("/async-site/b/") for _ in range(6))))

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        responses = asyncio.run(storm())
        again = asyncio.run(storm())
    assert views.RENDERS == {"b": 1}
    assert len({r.content for r in responses + again}) == 1


def test_single_middleware_renders_once(site: Any) -> None:
    use(site, ["django_fence.middleware.FencedCacheMiddleware", SESSION], "default")
    _results, errors, _ = in_threads(10, lambda: Client().get("/site/slow/"))
    assert not errors and views.RENDERS == {"slow": 1}


@pytest.mark.parametrize(("middleware", "ids"), [
    (["django_fence.middleware.FencedFetchFromCacheMiddleware"], ["django_fence.E005"]),
    (["django_fence.middleware.FencedFetchFromCacheMiddleware",
      "django_fence.middleware.FencedUpdateCacheMiddleware"], ["django_fence.E005"]),
    (["django_fence.middleware.FencedUpdateCacheMiddleware"], ["django_fence.E005"]),
    (FENCED_PAIR, []),
])
def test_the_halves_must_come_as_a_pair_in_order(settings: Any, middleware: list[str], ids: list[str]) -> None:
    settings.MIDDLEWARE = middleware
    # W011: the suite's "votes" alias is LocMem (tests/settings.py); not what this test is about.
    errors = [e for e in checks.run_checks() if e.id.startswith("django_fence") and e.id != "django_fence.W011"]
    assert [e.id for e in errors] == ids
