"""WSGI entry point of the storm site: ``gunicorn benchmarks.storm_site.wsgi:application`` from the repo root."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.storm_site.settings")

application = get_wsgi_application()
