"""The Lua scripts in ``lua/``: read once from the installed package, called by SHA1.

The drivers (``sync.execute``, ``aio.execute``) send EVALSHA; on NOSCRIPT (a restarted or
flushed server, a new cluster node) they SCRIPT LOAD the text and retry, so a script
crosses the wire once per server. On a ``RedisCluster``, SCRIPT LOAD goes to every primary
and EVALSHA to the node of the keys' slot. This is what redis-py's ``register_script``
does; calling ``evalsha`` directly costs a fifth less client time per call on a hot path
such as psadd. Sync and async clients share the same files.

Two rules of STYLE.md §6 we follow differently, on purpose: the scripts read the server's
TIME by default (PITFALLS 23: one clock for every client; ``clock=`` passes one explicit
clock in ARGV instead, which is how tests fix time), and they are sent by EVALSHA here
rather than through ``register_script`` (same protocol, a fifth less client time). TIME
before a write is allowed from Redis 5 on (effects replication); ZPOPMAX needs 5.0 too,
so Redis >= 5.0 is the minimum.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

NAMES = (
    "psadd",
    "pspull",
    "psdeletebelowthreshold",
    "psdecrement_all",
    "psexpire",
    "psdelete",
    "psremove",
    "zadd_now",
    "due_range",
    "due_take",
    "due_count",
)


@functools.cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua`` as installed with the package."""
    if name not in NAMES:
        raise ValueError(f"unknown script {name!r}")
    return resources.files("django_fence.streams").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Lua:
    """A script's text and the SHA1 that EVALSHA names it by."""

    name: str
    text: str
    sha: str


@functools.cache
def script(name: str) -> Lua:
    """The script ``name``, hashed once per process."""
    text = source(name)
    return Lua(name, text, hashlib.sha1(text.encode("utf-8")).hexdigest())
