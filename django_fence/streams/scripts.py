"""The Lua scripts in ``lua/``: read once from the installed package, registered per client.

``client.register_script`` (redis-py) keeps the script's SHA1 and sends EVALSHA; on
NOSCRIPT (a restarted or different server, a new cluster node) it loads the text with
SCRIPT LOAD and retries, so a script crosses the wire once per server. On a
``RedisCluster``, SCRIPT LOAD goes to every primary and EVALSHA to the slot's node.
Sync and async clients share the same files.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

NAMES = (
    "psadd",
    "pspull",
    "psdeletebelowthreshold",
    "psdecrement_all",
    "psexpire",
    "psdelete",
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


def register(client: Any) -> dict[str, Any]:
    """``{name: Script}`` for every script, bound to ``client`` (sync or asyncio, plain or cluster).

    Registering costs no round trip: it only hashes the text.
    """
    return {name: client.register_script(source(name)) for name in NAMES}
