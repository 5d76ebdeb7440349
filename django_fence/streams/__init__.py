"""Prioritized streams (good-redis's commands) and sorted sets (redset's API) on Redis.

``Streams``/``AsyncStreams`` take a redis-py client (plain or cluster); every multi-step
operation is one Lua script from ``lua/``, with every key it touches in KEYS. ``sets``
holds ``SortedSet``, ``TimeSortedSet`` and ``ScheduledSet``.
"""

from __future__ import annotations

from django_fence.streams.aio import AsyncStreams
from django_fence.streams.serializers import NamedtupleSerializer, Serializer
from django_fence.streams.sets import ScheduledSet, SortedSet, TimeSortedSet
from django_fence.streams.sync import Streams

__all__ = ["AsyncStreams", "NamedtupleSerializer", "ScheduledSet", "Serializer", "SortedSet", "Streams",
           "TimeSortedSet"]
