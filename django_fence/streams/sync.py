"""``Streams``: good-redis's prioritized-stream commands on a blocking redis-py client.

The methods keep good-redis's names, arguments and defaults; each hands its operation
(``commands.StreamCommands``) to :func:`run`, which sends the calls and returns the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError

from django_fence.exceptions import unavailable
from django_fence.streams import scripts
from django_fence.streams.commands import Call, Command, Operation, commands_for
from django_fence.streams.serializers import Serializer

T = TypeVar("T")
SyncClient: TypeAlias = "redis.Redis[Any] | RedisCluster[Any]"  # the stubs are generic, redis-py is not


def execute(client: SyncClient, call: Call) -> Any:
    """Send one call (a script by SHA, loaded on NOSCRIPT); "server unavailable" becomes BackendUnavailable."""
    try:
        if isinstance(call, Command):
            return client.execute_command(*call.args)
        lua = scripts.script(call.name)
        try:
            return client.execute_command("EVALSHA", lua.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            client.execute_command("SCRIPT LOAD", lua.text)  # every primary of a cluster
            return client.execute_command("EVALSHA", lua.sha, len(call.keys), *call.keys, *call.args)
    except Exception as exc:
        what = call.args[0] if isinstance(call, Command) else call.name
        if (error := unavailable(exc, f"redis {what}")) is not None:
            raise error from exc
        raise


def run(client: SyncClient, operation: Operation[T]) -> T:
    """Drive an operation: send each call it yields, give it the reply, return its result."""
    reply: Any = None
    try:
        while True:
            reply = execute(client, operation.send(reply))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # the generator's return value, typed by Operation[T]


class Streams:
    """Prioritized streams on Redis: ``Streams(redis.Redis(...))`` or ``Streams(RedisCluster(...))``.

    ``cluster`` (default: whether ``client`` is a ``RedisCluster``) selects hash-tag key
    names, ``{name}:t`` ..., so each stream lives in one slot. ``serializer`` stores
    structured values; ``clock`` replaces the server's TIME (see ``StreamCommands``).
    Results match good-redis's: pspull and psvalues decode keys to str; pskeys,
    psdeletebelowthreshold, psget and psnames return what the client returns (bytes
    unless ``decode_responses=True``). The deliberate differences (exact float priorities,
    counts from psexpire/psdecrement_all/psdelete, one result per item from psaddmany,
    raw values where ``serializer.loads`` fails) are listed in the README. A RedisCluster
    with ``cluster=False`` is refused: its streams need the hash-tag names.
    """

    def __init__(self, client: SyncClient, cluster: bool | None = None, serializer: Serializer | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.commands = commands_for(isinstance(client, RedisCluster), cluster, serializer, clock)

    def _run(self, operation: Operation[T]) -> T:
        return run(self.client, operation)

    def psadd(self, name: str, key: Any, value: Any, score: int | float = 1, readd: bool = False,
              with_decay: bool = False) -> int | float:
        """Add ``score`` to the key's priority and store its value; the new priority, or 0 if blocked.

        ``with_decay`` also records the name in ``:ps:decay`` (see ``psdecay``): in the same script,
        or just before it in cluster mode (another slot).
        """
        return self._run(self.commands.psadd(name, key, value, score, readd, with_decay))

    def psaddmany(self, name: str, items: list[tuple[Any, Any, int | float]],
                  readd: bool = False, with_decay: bool = False) -> list[int | float]:
        """psadd for each (key, value, score), atomically; one result per item."""
        return self._run(self.commands.psaddmany(name, items, readd, with_decay))

    def pspull(self, name: str, count: int = 1, purge: bool = True, gate: bool = False,
               expire_at: timedelta | datetime = timedelta(minutes=1440)) -> dict[Any, Any]:
        """Take up to ``count`` items, highest priority first: ``{key: value}`` in that order."""
        return self._run(self.commands.pspull(name, count, purge, gate, expire_at))

    def pskeys(self, name: str, *, withscores: bool = False, desc: bool = False) -> list[Any]:
        """The keys of a stream, lowest priority first (``desc``: highest first).

        ``withscores`` gives ``[(key, priority), ...]``, as redis-py's ``zrange`` (which
        good-redis hands its keyword arguments to) does; no other keyword is accepted.
        """
        return self._run(self.commands.pskeys(name, withscores, desc))

    def psvalues(self, name: str) -> dict[Any, Any]:
        """``{key: value}`` of every stored item."""
        return self._run(self.commands.psvalues(name))

    def psdelete(self, name: str) -> bool:
        """Remove the stream and its registry entry; whether it had any key."""
        return self._run(self.commands.psdelete(name))

    def psremove(self, name: str, keys: Iterable[Any]) -> int:
        """Remove these items (value, priority, pull mark) atomically; how many existed.

        Not one of good-redis's commands (it has no way to delete chosen items): the admin's
        "delete items" action uses it. The excluded set (``gate``) is left as it is.
        """
        return self._run(self.commands.psremove(name, list(keys)))

    def psincrement(self, name: str, key: Any, score: int | float) -> float:
        """Add ``score`` to a key's priority (ZINCRBY); the new priority."""
        return self._run(self.commands.psincrement(name, key, score))

    def psdeletebelowthreshold(self, name: str, threshold: int | float, gate: bool = False) -> list[Any]:
        """Remove the items with priority <= threshold (``gate`` excludes them); their keys."""
        return self._run(self.commands.psdeletebelowthreshold(name, threshold, gate))

    def pslen(self, name: str) -> int:
        """How many keys have a priority."""
        return self._run(self.commands.pslen(name))

    def psget(self, name: str, key: Any) -> Any:
        """The value stored for a key, or None."""
        return self._run(self.commands.psget(name, key))

    def psdecrement_all(self, name: str, decrement: int | float) -> int:
        """Subtract ``decrement`` from every priority, atomically; how many items changed."""
        return self._run(self.commands.psdecrement_all(name, decrement))

    def psexpire(self) -> int:
        """Across all streams, remove pulled items whose expiry has passed; how many."""
        return self._run(self.commands.psexpire())

    def psnames(self) -> set[Any]:
        """The registered stream names."""
        return self._run(self.commands.psnames())

    def psdecay(self) -> set[Any]:
        """The names of the streams ever added to ``with_decay`` (good-redis's ``:ps:decay``)."""
        return self._run(self.commands.psdecay())
