"""Admin for questions (with their choices inline), choices, and the read-only queue cursor.

``Choice.votes`` is read-only here and never written by a save: only the flush
and direct votes change it (with ``F()``), and a form posting the value it
showed would overwrite every vote applied since the page was loaded.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from .models import Choice, Question, QueueCursor

EDITABLE_CHOICE_FIELDS = ["question", "choice_text"]


def save_choice(choice: Choice, change: bool) -> None:
    """Save an edited choice without its ``votes`` (a new one starts at 0)."""
    if change:
        choice.save(update_fields=EDITABLE_CHOICE_FIELDS)
    else:
        choice.save()


class ChoiceInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Choice
    extra = 3
    readonly_fields = ["votes"]


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["question_text", "pub_date", "closes_at"]
    list_filter = ["pub_date"]
    search_fields = ["question_text"]
    inlines = [ChoiceInline]

    def save_formset(self, request: HttpRequest, form: ModelForm[Any], formset: BaseInlineFormSet[Any, Any, Any],
                     change: bool) -> None:
        if formset.model is not Choice:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)  # fills new_objects, changed_objects and deleted_objects
        for obj in formset.deleted_objects:
            obj.delete()
        for obj in formset.new_objects:
            save_choice(obj, change=False)
        for obj, _fields in formset.changed_objects:
            save_choice(obj, change=True)
        formset.save_m2m()


@admin.register(Choice)
class ChoiceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["choice_text", "question", "votes"]
    list_select_related = ["question"]
    search_fields = ["choice_text", "question__question_text"]
    readonly_fields = ["votes"]

    def save_model(self, request: HttpRequest, obj: Choice, form: ModelForm[Any], change: bool) -> None:
        save_choice(obj, change)


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
