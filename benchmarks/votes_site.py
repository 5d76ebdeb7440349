"""Settings of the site that benchmarks/votes.py serves with gunicorn (DJANGO_SETTINGS_MODULE).

The database and the votes cache come from the environment the benchmark sets:
VOTES_BENCH_DATABASES (JSON DATABASES) and VOTES_BENCH_MEMCACHED (host:port).
A middleware counts each request's SQL queries into an ``X-SQL-Queries`` header.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "django-fence-votes-benchmark"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_fence",
    "django_fence.polls",
]
MIDDLEWARE = [
    "benchmarks.votes_urls.count_queries",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "benchmarks.votes_urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = json.loads(os.environ.get("VOTES_BENCH_DATABASES", "{}")) or {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "votes-bench.sqlite3"}
}
_MEMCACHED = os.environ.get("VOTES_BENCH_MEMCACHED", "127.0.0.1:11211")
_BEHAVIORS = {"ketama": True, "tcp_nodelay": True, "connect_timeout": 500, "_poll_timeout": 500, "retry_timeout": 1}
CACHES = {
    "votes": {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": _MEMCACHED,
              "OPTIONS": {"behaviors": _BEHAVIORS}},
    "backing": {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": _MEMCACHED,
                "KEY_PREFIX": "fence", "OPTIONS": {"behaviors": _BEHAVIORS}},
    "default": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "backing", "TIMEOUT": 60},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"django_fence": {"level": "ERROR"}, "django": {"level": "ERROR"}}}
