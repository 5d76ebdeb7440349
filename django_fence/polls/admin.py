"""Admin for questions (with their choices inline), choices, and the read-only queue cursor."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Choice, Question, QueueCursor


class ChoiceInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Choice
    extra = 3


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["question_text", "pub_date", "closes_at"]
    list_filter = ["pub_date"]
    search_fields = ["question_text"]
    inlines = [ChoiceInline]


@admin.register(Choice)
class ChoiceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["choice_text", "question", "votes"]
    list_select_related = ["question"]
    search_fields = ["choice_text", "question__question_text"]


@admin.register(QueueCursor)
class QueueCursorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: only flush_vote_queue moves a cursor."""

    list_display = ["prefix", "position", "applied", "lost", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
