"""Settings of the view-level storm's site; benchmarks/view_storm.py sets the environment.

- ``STORM_CACHES``: CACHES as JSON, with the aliases "backing" (what ``cache_page`` and the
  render counters use) and "fenced" (a FencedCache over "backing").
- ``STORM_PAGE_TTL``: seconds a page stays fresh (2).
- ``STORM_RENDER_MS``: how long a render takes (100); ``STORM_RENDER``: "sleep" (waiting, as on
  a database) or "cpu" (a busy loop of that much CPU time, competing for the GIL and the cores).
"""

import json
import os

SECRET_KEY = "django-fence-storm-benchmark"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["django_fence"]
MIDDLEWARE: list[str] = []  # the pages carry their caching; nothing else should cost time
ROOT_URLCONF = "benchmarks.storm_site.urls"
DATABASES: dict[str, object] = {}
USE_TZ = True

CACHES = json.loads(os.environ["STORM_CACHES"])
STORM_PAGE_TTL = int(os.environ.get("STORM_PAGE_TTL", "2"))
STORM_RENDER_SECONDS = float(os.environ.get("STORM_RENDER_MS", "100")) / 1000
STORM_RENDER = os.environ.get("STORM_RENDER", "sleep")

# The fence's fail-open warnings and the tracebacks of 500s reach gunicorn's log, which the
# benchmark shows when a row has errors (with DEBUG off, Django would only mail them to ADMINS).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_fence": {"handlers": ["console"], "level": "WARNING"},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
