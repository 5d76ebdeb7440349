"""Settings for the django-fence demo project.

Everything runs on embedded defaults (SQLite, LocMemCache) unless the
environment names a real server:

- ``FENCE_DATABASE=postgres``: PostgreSQL database "test" on 127.0.0.1, user
  postgres (trust auth).
- ``FENCE_REDIS_URL=redis://127.0.0.1:6379/0``: the fence wraps Django's RedisCache, and the
  admin's stream pages show that server's streams (else an in-process fakeredis's).
- ``FENCE_MEMCACHED=127.0.0.1:11211``: the fence wraps PyLibMCCache (used when
  FENCE_REDIS_URL is not set), and the poll app's "votes" alias uses it.

Not for production: the secret key is public and DEBUG is on.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-django-fence-demo-only")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_fence",
    "django_fence.polls",
    "testproject.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.environ.get("FENCE_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
        }
    }


def backing_cache() -> dict[str, object]:
    """The CACHES entry the fence wraps: a real server if the environment names one."""
    if redis_url := os.environ.get("FENCE_REDIS_URL"):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    if memcached := os.environ.get("FENCE_MEMCACHED"):
        return {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": memcached}
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "django-fence-demo"}


def votes_cache() -> dict[str, object]:
    """The poll app's queue and counters: memcached if FENCE_MEMCACHED names one, else LocMemCache."""
    if memcached := os.environ.get("FENCE_MEMCACHED"):
        return {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache", "LOCATION": memcached,
                "OPTIONS": {"behaviors": {"ketama": True, "connect_timeout": 500, "_poll_timeout": 500,
                                          "retry_timeout": 1}}}
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "django-fence-votes"}


def streams_cache() -> dict[str, object]:
    """The Redis whose prioritized streams the admin shows: FENCE_REDIS_URL, else an in-process fakeredis."""
    if redis_url := os.environ.get("FENCE_REDIS_URL"):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    import fakeredis

    connection = getattr(fakeredis, "FakeRedisConnection", None) or fakeredis.FakeConnection  # renamed in 2.3x
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://demo-streams:6379/0",
            "OPTIONS": {"connection_class": connection}}


CACHES = {
    "streams": streams_cache(),
    "votes": votes_cache(),
    "backing": backing_cache(),
    "default": {
        "BACKEND": "django_fence.backends.FencedCache",
        "LOCATION": "backing",
        "TIMEOUT": 30,
        "OPTIONS": {"BETA": 1.0, "LOCK_TIMEOUT": 10, "WAIT_TIMEOUT": 5, "GRACE": 60},
    },
}

# Show the fence's fail-open warnings and the demo's own messages on the console.
DJANGO_FENCE = {"STREAMS_REDIS": {"demo": "streams"}}
#: The streams live in this process's fakeredis: the demo app fills the sample stream when it starts.
DEMO_EMBEDDED_STREAMS = not os.environ.get("FENCE_REDIS_URL")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_fence": {"handlers": ["console"], "level": "INFO"},
        "testproject": {"handlers": ["console"], "level": "INFO"},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
