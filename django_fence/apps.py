from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class FenceConfig(AppConfig):
    """django-fence: registers its system checks."""

    name = "django_fence"
    verbose_name = "Fence"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .checks import check_admin_settings, check_fenced_caches, check_middleware, check_stream_servers

        checks.register(check_fenced_caches, checks.Tags.caches)
        checks.register(check_middleware, checks.Tags.caches)
        checks.register(check_stream_servers)
        checks.register(check_admin_settings)
