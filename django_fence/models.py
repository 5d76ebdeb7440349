"""The fence's permissions: reading its numbers (metrics, dashboard) and acting on what it holds.

No table: an unmanaged model whose only job is to carry the two permissions
``django_fence.view_fence`` and ``django_fence.change_fence``, granted
through Django's normal permission system (users, groups, the admin).
"""

from __future__ import annotations

from django.db import models


class Fence(models.Model):
    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "fence"
        verbose_name_plural = "fence"

    def __str__(self) -> str:
        return "fence"
