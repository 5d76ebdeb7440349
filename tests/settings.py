"""Settings for the test suite. Real servers are wired in by tests/conftest.py fixtures.

Child processes started by tests get their CACHES through FENCE_TEST_CACHES
(JSON), so they talk to the same servers as the parent.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "django-fence-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # the admin's CSS and our dashboard.js, served by live_server in browser tests
    "django_fence",
    "django_fence.polls",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CACHES = {
    "backing": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests-backing"},
    "default": {
        "BACKEND": "django_fence.backends.FencedCache",
        "LOCATION": "backing",
        "TIMEOUT": 300,
        "OPTIONS": {"BETA": 1.0, "LOCK_TIMEOUT": 10, "WAIT_TIMEOUT": 5, "GRACE": 60},
    },
    "votes": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests-votes"},
}
if os.environ.get("FENCE_TEST_CACHES"):
    CACHES = json.loads(os.environ["FENCE_TEST_CACHES"])
# Child processes that share the parent's database (a file, or PostgreSQL) get it through FENCE_TEST_DATABASES.
if os.environ.get("FENCE_TEST_DATABASES"):
    DATABASES = json.loads(os.environ["FENCE_TEST_DATABASES"])
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJANGO_FENCE = {"STATS_INTERVAL": 0.2}
