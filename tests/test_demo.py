"""The demo project's page, loaded with Django's test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches

from testproject import settings as demo_settings
from testproject.demo.report import total_computations

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def demo_site(settings: Any) -> Iterator[None]:
    """Serve testproject's URLs with its apps, middleware and a fenced LocMemCache."""
    settings.INSTALLED_APPS = demo_settings.INSTALLED_APPS
    settings.MIDDLEWARE = demo_settings.MIDDLEWARE
    settings.TEMPLATES = demo_settings.TEMPLATES
    settings.ROOT_URLCONF = "testproject.urls"
    settings.CACHES = {
        "backing": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "demo-test"},
        "default": demo_settings.CACHES["default"],
    }
    yield
    caches["backing"].clear()


def test_demo_page_computes_report_once_when_loaded_twice(demo_site: None, client: Any) -> None:
    first = client.get("/")
    second = client.get("/")
    assert first.status_code == second.status_code == 200
    assert first.context["report"] == second.context["report"]
    assert set(second.context["stats"]) >= {"hits", "misses", "recomputes"}
    assert total_computations() == 1


def test_demo_storm_reports_one_computation(demo_site: None, client: Any) -> None:
    response = client.post("/storm/", follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert "ran the computation 1 time(s)" in message
    assert "0 error(s)" in message


@pytest.mark.parametrize(("name", "path"), [("page", "/page/"), ("fragment", "/fragment/"), ("fenced", "/fenced/")])
def test_demo_pages_through_the_fence_run_their_expensive_part_once(demo_site: None, client: Any, name: str,
                                                                    path: str) -> None:
    from testproject.demo.counters import total_runs

    first, second = client.get(path), client.get(path)
    assert first.status_code == second.status_code == 200
    assert total_runs(name) == 1


@pytest.mark.parametrize("name", ["page", "fragment", "fenced"])
def test_demo_storm_buttons_run_the_expensive_part_once(demo_site: None, client: Any, name: str) -> None:
    from testproject.demo.counters import total_runs

    before = total_runs(name)
    response = client.post(f"/{name}/storm/", follow=True)
    assert response.status_code == 200
    assert total_runs(name) == before + 1
    assert "ran its expensive part 1 time" in response.content.decode()


@pytest.mark.django_db
def test_demo_admin_shows_the_sample_stream_on_its_embedded_redis(demo_site: None, settings: Any,
                                                                  admin_client: Any) -> None:
    from testproject.demo.streams import SAMPLE_STREAM, seed_sample_stream

    settings.CACHES = {**settings.CACHES, "streams": demo_settings.CACHES["streams"],
                       "votes": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "demo-votes"}}
    settings.DJANGO_FENCE = demo_settings.DJANGO_FENCE
    settings.STATIC_URL = demo_settings.STATIC_URL
    assert demo_settings.DEMO_EMBEDDED_STREAMS  # no FENCE_REDIS_URL in the suite: fakeredis
    seed_sample_stream()
    assert seed_sample_stream() == 0  # filled once
    dashboard = admin_client.get("/admin/django_fence/fence/").content.decode()
    assert f'<tr data-stream="{SAMPLE_STREAM}">' in dashboard
    page = admin_client.get(f"/admin/django_fence/fence/streams/demo/stream/{SAMPLE_STREAM}").content.decode()
    assert "report" in page and "&lt;script&gt;alert(&#x27;shown as text&#x27;)&lt;/script&gt;" in page
