"""Views the page tests and their child processes request (tests/urls.py routes them)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from django.http import HttpRequest, HttpResponse

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
