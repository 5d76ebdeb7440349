from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class PollsConfig(AppConfig):
    """The poll app (INSTALLED_APPS ``"django_fence.polls"``): registers its cache check and invalidation."""

    name = "django_fence.polls"
    label = "polls"
    verbose_name = "Polls"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_fence.checks import check_poll_caches

        from . import signals  # noqa: F401  (connects the receivers)

        checks.register(check_poll_caches, checks.Tags.caches)
