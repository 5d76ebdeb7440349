"""Key names of a prioritized stream, in good-redis's layout or in cluster-safe hash-tag mode.

good-redis keeps a stream ``name`` in ``name:t`` (values), ``name:s`` (priorities),
``name:exc`` (excluded keys) and ``name:exp`` (pulled keys and when their block ends),
and the names of all streams in the set ``:ps:keys``. The default layout is the same, so
data written by good-redis is read here and the other way round.

On Redis Cluster a script may only touch keys of one hash slot. Cluster mode wraps the
name in a hash tag, ``{name}:t``, ``{name}:s``, ..., so a stream's four keys share a slot
(https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
The registry is one key and lives in whatever slot ``:ps:keys`` hashes to: scripts never
touch it together with a stream's keys in cluster mode (see ``commands.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

REGISTRY = ":ps:keys"


@dataclass(frozen=True)
class StreamKeys:
    """The four keys of one stream: ``values`` (t), ``priorities`` (s), ``excluded`` (exc), ``expiring`` (exp)."""

    name: str
    cluster: bool
    values: str = field(init=False)
    priorities: str = field(init=False)
    excluded: str = field(init=False)
    expiring: str = field(init=False)

    def __post_init__(self) -> None:
        prefix = f"{{{self.name}}}" if self.cluster else self.name
        for attribute, suffix in (("values", "t"), ("priorities", "s"), ("excluded", "exc"), ("expiring", "exp")):
            object.__setattr__(self, attribute, f"{prefix}:{suffix}")

    def all(self) -> tuple[str, str, str, str]:
        """Every key of the stream, in the order the scripts take them (t, s, exc, exp)."""
        return self.values, self.priorities, self.excluded, self.expiring


@functools.lru_cache(maxsize=1024)  # hot paths name the same few streams over and over
def _checked_keys(name: str, cluster: bool) -> StreamKeys:
    if not name:
        raise ValueError("a stream name may not be empty")
    if cluster and name.startswith("}"):
        raise ValueError(f"stream name {name!r}: in cluster mode a name may not start with '}}' (empty hash tag)")
    return StreamKeys(name, cluster)


def stream_keys(name: object, cluster: bool) -> StreamKeys:
    """Validate a stream name and return its keys.

    A name is a non-empty str. In cluster mode it may not start with ``}``: the hash tag
    ``{}`` would be empty, Redis would hash each whole key, and the keys would scatter.
    """
    if not isinstance(name, str):
        raise TypeError(f"a stream name must be a str, not {type(name).__name__}")
    return _checked_keys(name, cluster)
