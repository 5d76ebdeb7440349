"""The vote form: a choice id that must belong to the question being voted on."""

from __future__ import annotations

from typing import Any

from django import forms


class VoteForm(forms.Form):
    """``choice`` is a Choice id; ``choices`` are the question's (id, text) pairs from its cached metadata."""

    choice = forms.IntegerField(
        min_value=1,
        error_messages={"required": "Choose one of the answers.", "invalid": "The choice must be a number."},
    )

    def __init__(self, *args: Any, choices: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = choices

    def clean_choice(self) -> int:
        choice: int = self.cleaned_data["choice"]
        if choice not in {pk for pk, _ in self.choices}:
            raise forms.ValidationError("That answer does not belong to this question.", code="other_question")
        return choice
