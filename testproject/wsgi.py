"""WSGI entry point for the demo project, e.g. ``gunicorn testproject.wsgi`` from the repo root."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application = get_wsgi_application()
