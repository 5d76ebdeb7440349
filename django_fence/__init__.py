"""django-fence: a stampede-proof cache backend for Django, and what is built on it."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["fenced", "fenced_cache_page", "invalidate_fragment", "invalidate_page"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): importing the package must not import Django's HTTP machinery before setup.
    if name in ("fenced", "fenced_cache_page"):
        from . import decorators

        return getattr(decorators, name)
    if name in ("invalidate_fragment", "invalidate_page"):
        from . import invalidation

        return getattr(invalidation, name)
    raise AttributeError(f"module 'django_fence' has no attribute {name!r}")
