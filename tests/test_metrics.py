"""The metrics view: Prometheus text (parsed back with prometheus_client's parser), JSON, and who may read it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import caches
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import backing_config, fenced_caches, flush

pytestmark = [pytest.mark.timeout(60), pytest.mark.django_db]

URL = "/fence/metrics"
TOKEN = "s3cret-token"


@pytest.fixture(params=["redis", "pylibmc"])
def activity(request: pytest.FixtureRequest, settings: Any) -> Iterator[None]:
    """A FencedCache with 2 misses (2 recomputes) and 3 hits behind it, and a second alias."""
    kind = request.param
    location = request.getfixturevalue("redis_url" if kind == "redis" else "memcached_location")
    flush(kind, location)
    settings.CACHES = {**fenced_caches(backing_config(kind, location), BETA=0.0),
                       "pages": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "backing",
                                 "KEY_PREFIX": "pages"}}
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2, "METRICS_TOKEN": TOKEN}
    cache = caches["default"]
    cache.reset_stats()
    caches["pages"].reset_stats()
    for key in ("a", "b"):
        cache.get_or_set(key, key, 60)
    for key in ("a", "b", "a"):
        cache.get_or_set(key, key, 60)
    yield
    flush(kind, location)


def staff(permission: bool = True, active: bool = True, is_staff: bool = True) -> Client:
    user = User.objects.create_user(f"u{uuid.uuid4().hex[:8]}", password="x", is_staff=is_staff, is_active=active)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="view_fence", content_type__app_label="django_fence"))
    client = Client()
    client.force_login(user)
    return client


def test_prometheus_text_parses_and_counts_what_happened(activity: None) -> None:
    response = Client().get(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {(s.name, s.labels.get("alias")): s.value
               for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}
    assert samples[("django_fence_hits_total", "default")] == 3
    assert samples[("django_fence_misses_total", "default")] == 2
    assert samples[("django_fence_recomputes_total", "default")] == 2
    assert samples[("django_fence_recompute_seconds_count", "default")] == 2
    assert samples[("django_fence_recompute_seconds_sum", "default")] >= 0
    assert samples[("django_fence_up", "default")] == 1
    assert samples[("django_fence_hits_total", "pages")] == 0
    for name in ("stale_served", "early_refreshes", "lock_waits", "wait_timeouts", "errors"):
        assert (f"django_fence_{name}_total", "default") in samples


def test_json_has_the_same_numbers(activity: None) -> None:
    numbers = staff().get(URL, {"format": "json"}).json()["aliases"]
    assert numbers["default"]["hits"] == 3 and numbers["default"]["misses"] == 2
    assert numbers["default"]["hit_ratio"] == pytest.approx(3 / 5)
    assert set(numbers) == {"default", "pages"}


@pytest.mark.parametrize(("client", "status"), [
    (lambda: Client(), 403),
    (lambda: Client(headers={"Authorization": "Bearer wrong"}), 403),
    (lambda: Client(headers={"Authorization": f"Bearer {TOKEN}x"}), 403),
    (lambda: Client(headers={"Authorization": f"Bearer {TOKEN}"}), 200),
    (lambda: staff(), 200),
    (lambda: staff(permission=False), 403),
    (lambda: staff(is_staff=False), 403),
    (lambda: staff(active=False), 403),
])
def test_who_may_read(activity: None, client: Any, status: int) -> None:
    assert client().get(URL, {"format": "json"}).status_code == status


def test_without_a_token_setting_a_bearer_header_gives_nothing(activity: None, settings: Any) -> None:
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2}
    assert Client(headers={"Authorization": "Bearer "}).get(URL).status_code == 403


def test_never_cached_even_under_the_fenced_middleware(activity: None, settings: Any) -> None:
    settings.MIDDLEWARE = ["django_fence.middleware.FencedCacheMiddleware", *settings.MIDDLEWARE]
    settings.CACHE_MIDDLEWARE_ALIAS = "default"
    client = Client(headers={"Authorization": f"Bearer {TOKEN}"})
    first = client.get(URL, {"format": "json"})
    assert "no-store" in first["Cache-Control"]
    caches["default"].get_or_set("c", "c", 60)
    second = client.get(URL, {"format": "json"})
    assert second.json()["aliases"]["default"]["misses"] == first.json()["aliases"]["default"]["misses"] + 1


def test_only_get(activity: None) -> None:
    assert staff().post(URL).status_code == 405


def test_a_server_that_is_down_reports_an_error_not_a_500(settings: Any) -> None:
    dead = "redis://127.0.0.1:1/0"
    settings.CACHES = {**fenced_caches(backing_config("redis", dead, timeout=0.5))}
    settings.DJANGO_FENCE = {"STATS_INTERVAL": 0.2, "METRICS_TOKEN": TOKEN}
    client = Client(headers={"Authorization": f"Bearer {TOKEN}"})
    assert "error" in client.get(URL, {"format": "json"}).json()["aliases"]["default"]
    text = client.get(URL).content.decode()
    samples = {(s.name, s.labels.get("alias")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("django_fence_up", "default")] == 0
