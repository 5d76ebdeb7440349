"""Editing a question or a choice drops its fenced metadata and totals, so the next read is fresh."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Choice, Question
from .services import forget_question


@receiver([post_save, post_delete], sender=Question)
def _question_changed(sender: Any, instance: Question, **kwargs: Any) -> None:
    forget_question(instance.pk)


@receiver([post_save, post_delete], sender=Choice)
def _choice_changed(sender: Any, instance: Choice, **kwargs: Any) -> None:
    forget_question(instance.question_id)
