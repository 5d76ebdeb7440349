"""The admin's actions on a stream, one form each: what it asks, what it will do, what it did.

Each form validates its input (a clear error and nothing written on bad input), says in
``consequence()`` what a confirmation page should show before a destructive action runs,
and in ``perform()`` runs the action through ``Streams`` and returns the sentence that
goes to Django's messages and to the admin log.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from .dashboard import decode_key, display
from .streams import Streams
from .streams.keys import stream_keys

MAX_KEYS = 1000  # items one "delete items" may name
MAX_PULL = 10_000
SHOWN = 10  # keys named in a message before "and N more"


class ActionFailed(Exception):
    """The action could not run as asked (the item is gone, ...); nothing was changed."""


def listing(keys: list[Any]) -> str:
    shown = ", ".join(display(key) for key in keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def decoded(token: object) -> str:
    try:
        return decode_key(str(token))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class KeyField(forms.CharField):
    """An item's key, sent by the page as base64 of its bytes (``Item.token``), given back as str."""

    widget = forms.HiddenInput

    def to_python(self, value: Any) -> str:
        token: str = super().to_python(value) or ""
        return decoded(token) if token else token


class KeyListField(forms.Field):
    """Item keys (``Item.token``) sent as repeated fields: checkboxes, or hidden inputs on the confirmation page."""

    widget = forms.MultipleHiddenInput
    hidden_widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        tokens = [str(token) for token in (value or []) if str(token)]
        if len(tokens) > MAX_KEYS:
            raise ValidationError(f"Choose at most {MAX_KEYS} items at a time.")
        return list(dict.fromkeys(decoded(token) for token in tokens))

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise ValidationError("Choose at least one item.")


class NonZeroFloatField(forms.FloatField):
    """A finite number other than 0 (Django's FloatField already refuses nan and infinities)."""

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value == 0:
            raise ValidationError(f"{self.label} 0 changes nothing.")


class StreamAction(forms.Form):
    """An action on one stream; subclasses set ``name``, ``label`` and ``destructive``."""

    name: ClassVar[str]
    label: ClassVar[str]
    destructive: ClassVar[bool] = True

    def consequence(self, streams: Streams, stream: str) -> str:
        """What confirming will do, for the confirmation page."""
        raise NotImplementedError

    def perform(self, streams: Streams, stream: str) -> str:
        """Run the action; what it did."""
        raise NotImplementedError


class ChangePriority(StreamAction):
    name = "bump"
    label = "Change priority"
    destructive = False

    key = KeyField()
    by = NonZeroFloatField(label="Change by")

    def perform(self, streams: Streams, stream: str) -> str:
        key, by = self.cleaned_data["key"], self.cleaned_data["by"]
        if streams.client.zscore(stream_keys(stream, streams.commands.cluster).priorities, key) is None:
            raise ActionFailed(f"The stream has no item {key!r}.")
        now = streams.psincrement(stream, key, by)
        return f"Changed the priority of {key!r} by {by:+g}; it is now {now:g}."


class DeleteItems(StreamAction):
    name = "delete"
    label = "Delete selected items"

    keys = KeyListField()

    def consequence(self, streams: Streams, stream: str) -> str:
        keys = self.cleaned_data["keys"]
        return f"Delete {len(keys)} item(s): {listing(keys)}."

    def perform(self, streams: Streams, stream: str) -> str:
        keys = self.cleaned_data["keys"]
        removed = streams.psremove(stream, keys)
        return f"Deleted {removed} of {len(keys)} chosen item(s): {listing(keys)}."


class DeleteBelowThreshold(StreamAction):
    name = "delete_below"
    label = "Delete below a threshold"

    threshold = forms.FloatField(help_text="Items with a priority at or below it are deleted.")
    gate = forms.BooleanField(required=False, help_text="Also keep their keys from being added again.")

    def consequence(self, streams: Streams, stream: str) -> str:
        threshold, gate = self.cleaned_data["threshold"], self.cleaned_data["gate"]
        count = streams.client.zcount(stream_keys(stream, streams.commands.cluster).priorities, "-inf", threshold)
        return (f"Delete the {count} item(s) with a priority at or below {threshold:g}"
                + (" and keep their keys from being added again." if gate else "."))

    def perform(self, streams: Streams, stream: str) -> str:
        threshold, gate = self.cleaned_data["threshold"], self.cleaned_data["gate"]
        removed = streams.psdeletebelowthreshold(stream, threshold, gate=gate)
        return (f"Deleted {len(removed)} item(s) with a priority at or below {threshold:g}"
                + (", their keys excluded from being added again" if gate else "")
                + (f": {listing(removed)}." if removed else "."))


class DecrementAll(StreamAction):
    name = "decrement_all"
    label = "Decrement all priorities"

    by = NonZeroFloatField(label="Decrement by")

    def consequence(self, streams: Streams, stream: str) -> str:
        return f"Subtract {self.cleaned_data['by']:g} from the priority of all {streams.pslen(stream)} item(s)."

    def perform(self, streams: Streams, stream: str) -> str:
        changed = streams.psdecrement_all(stream, self.cleaned_data["by"])
        return f"Subtracted {self.cleaned_data['by']:g} from the priority of {changed} item(s)."


class Pull(StreamAction):
    name = "pull"
    label = "Pull items"

    count = forms.IntegerField(min_value=1, max_value=MAX_PULL)
    purge = forms.BooleanField(required=False, initial=True,
                               help_text="Remove the pulled items; otherwise they stay, blocked, until they expire.")
    gate = forms.BooleanField(required=False, help_text="With purge: keep their keys from being added again.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("gate") and not data.get("purge"):
            raise ValidationError("Gate applies only to purged items: tick purge too, or untick gate.")
        return data

    def consequence(self, streams: Streams, stream: str) -> str:
        count, purge, gate = (self.cleaned_data[name] for name in ("count", "purge", "gate"))
        what = "remove them" if purge else "keep them, blocked for a day"
        return (f"Pull the {count} item(s) of highest priority and {what}"
                + (", keeping their keys from being added again." if gate else "."))

    def perform(self, streams: Streams, stream: str) -> str:
        count, purge, gate = (self.cleaned_data[name] for name in ("count", "purge", "gate"))
        pulled = list(streams.pspull(stream, count, purge=purge, gate=gate))
        return f"Pulled {len(pulled)} item(s)" + (f": {listing(pulled)}." if pulled else ".")


class DeleteStream(StreamAction):
    name = "delete_stream"
    label = "Delete the stream"

    def consequence(self, streams: Streams, stream: str) -> str:
        return f"Delete the stream and all its {streams.pslen(stream)} item(s), and remove it from the registry."

    def perform(self, streams: Streams, stream: str) -> str:
        existed = streams.psdelete(stream)
        return "Deleted the stream." if existed else "The stream held no keys; removed it from the registry."


ACTIONS: dict[str, type[StreamAction]] = {
    action.name: action for action in (ChangePriority, DeleteItems, DeleteBelowThreshold, DecrementAll, Pull,
                                       DeleteStream)
}
