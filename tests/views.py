"""Views the page tests and their child processes request (tests/urls.py routes them)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

from django.http import HttpRequest, HttpResponse
from django.utils.translation import get_language

from django_fence import fenced_cache_page


@fenced_cache_page(60)
def slow_page(request: HttpRequest) -> HttpResponse:
    """300 ms to render; each render's body is unique, so counting distinct bodies counts renders."""
    time.sleep(0.3)
    return HttpResponse(f"render {os.getpid()} {uuid.uuid4().hex}")


@fenced_cache_page(60)
async def async_slow_page(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0.3)
    return HttpResponse(f"render {os.getpid()} {uuid.uuid4().hex}")


RENDERS: dict[str, int] = {}
_renders_lock = threading.Lock()


def counted(request: HttpRequest, name: str) -> HttpResponse:
    """A plain view for the middleware tests: counts its renders per name; "slow" takes 300 ms,
    "session" reads the session (so SessionMiddleware adds Vary: Cookie on the way out)."""
    with _renders_lock:
        RENDERS[name] = number = RENDERS.get(name, 0) + 1
    if name == "slow":
        time.sleep(0.3)
    user = request.session.get("user", "-") if name == "session" else ""
    return HttpResponse(f"{name} {number} {os.getpid()} lang={get_language()} user={user}")


async def async_counted(request: HttpRequest, name: str) -> HttpResponse:
    with _renders_lock:
        RENDERS[name] = number = RENDERS.get(name, 0) + 1
    await asyncio.sleep(0.3)
    return HttpResponse(f"{name} {number} {os.getpid()}")
