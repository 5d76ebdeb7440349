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
