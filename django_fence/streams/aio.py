"""``AsyncStreams``: the same operations as ``Streams`` on a ``redis.asyncio`` client.

Only the driver differs: :func:`run` awaits each call. The operations themselves are
``commands.StreamCommands``, shared with the blocking ``Streams``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from django_fence.exceptions import unavailable
from django_fence.streams import scripts
from django_fence.streams.commands import Call, Command, Operation, commands_for
from django_fence.streams.serializers import Serializer

T = TypeVar("T")
AsyncClient: TypeAlias = "redis.asyncio.Redis[Any] | RedisCluster[Any]"  # the stubs are generic, redis-py is not


async def execute(client: AsyncClient, call: Call) -> Any:
    """Send one call (a script by SHA, loaded on NOSCRIPT); "server unavailable" becomes BackendUnavailable."""
    try:
        if isinstance(call, Command):
            return await client.execute_command(*call.args)
        lua = scripts.script(call.name)
        try:
            return await client.execute_command("EVALSHA", lua.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            await client.execute_command("SCRIPT LOAD", lua.text)  # every primary of a cluster
            return await client.execute_command("EVALSHA", lua.sha, len(call.keys), *call.keys, *call.args)
    except Exception as exc:
        what = call.args[0] if isinstance(call, Command) else call.name
        if (error := unavailable(exc, f"redis {what}")) is not None:
            raise error from exc
        raise


async def run(client: AsyncClient, operation: Operation[T]) -> T:
    """Drive an operation: await each call it yields, give it the reply, return its result."""
    reply: Any = None
    try:
        while True:
            reply = await execute(client, operation.send(reply))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # the generator's return value, typed by Operation[T]


class AsyncStreams:
    """Prioritized streams on a ``redis.asyncio.Redis`` (or asyncio ``RedisCluster``); see ``Streams``.

    Results are those of ``Streams``, not the pipeline lists good-redis's async client
    returns from psadd, psdelete and psexpire (see the README).
    """

    def __init__(self, client: AsyncClient, cluster: bool | None = None, serializer: Serializer | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.client = client
        self.commands = commands_for(isinstance(client, RedisCluster), cluster, serializer, clock)

    async def _run(self, operation: Operation[T]) -> T:
        return await run(self.client, operation)

    async def psadd(self, name: str, key: Any, value: Any, score: int | float = 1, readd: bool = False,
                    with_decay: bool = False) -> int | float:
        """Add ``score`` to the key's priority and store its value; the new priority, or 0 if blocked.

        ``with_decay`` also records the name in ``:ps:decay`` (see ``psdecay``): in the same script,
        or just before it in cluster mode (another slot).
        """
        return await self._run(self.commands.psadd(name, key, value, score, readd, with_decay))

    async def psaddmany(self, name: str, items: list[tuple[Any, Any, int | float]],
                        readd: bool = False, with_decay: bool = False) -> list[int | float]:
        """psadd for each (key, value, score), atomically; one result per item."""
        return await self._run(self.commands.psaddmany(name, items, readd, with_decay))

    async def pspull(self, name: str, count: int = 1, purge: bool = True, gate: bool = False,
                     expire_at: timedelta | datetime = timedelta(minutes=1440)) -> dict[Any, Any]:
        """Take up to ``count`` items, highest priority first: ``{key: value}`` in that order."""
        return await self._run(self.commands.pspull(name, count, purge, gate, expire_at))

    async def pskeys(self, name: str, *, withscores: bool = False, desc: bool = False) -> list[Any]:
        """The keys of a stream, lowest priority first (``desc``: highest first).

        ``withscores`` gives ``[(key, priority), ...]``, as redis-py's ``zrange`` (which
        good-redis hands its keyword arguments to) does; no other keyword is accepted.
        """
        return await self._run(self.commands.pskeys(name, withscores, desc))

    async def psvalues(self, name: str) -> dict[Any, Any]:
        """``{key: value}`` of every stored item."""
        return await self._run(self.commands.psvalues(name))

    async def psdelete(self, name: str) -> bool:
        """Remove the stream and its registry entry; whether it had any key."""
        return await self._run(self.commands.psdelete(name))

    async def psremove(self, name: str, keys: Iterable[Any]) -> int:
        """Remove these items (value, priority, pull mark) atomically; how many existed.

        Not one of good-redis's commands (it has no way to delete chosen items): the admin's
        "delete items" action uses it. The excluded set (``gate``) is left as it is.
        """
        return await self._run(self.commands.psremove(name, list(keys)))

    async def psincrement(self, name: str, key: Any, score: int | float) -> float:
        """Add ``score`` to a key's priority (ZINCRBY); the new priority."""
        return await self._run(self.commands.psincrement(name, key, score))

    async def psdeletebelowthreshold(self, name: str, threshold: int | float, gate: bool = False) -> list[Any]:
        """Remove the items with priority <= threshold (``gate`` excludes them); their keys."""
        return await self._run(self.commands.psdeletebelowthreshold(name, threshold, gate))

    async def pslen(self, name: str) -> int:
        """How many keys have a priority."""
        return await self._run(self.commands.pslen(name))

    async def psget(self, name: str, key: Any) -> Any:
        """The value stored for a key, or None."""
        return await self._run(self.commands.psget(name, key))

    async def psdecrement_all(self, name: str, decrement: int | float) -> int:
        """Subtract ``decrement`` from every priority, atomically; how many items changed."""
        return await self._run(self.commands.psdecrement_all(name, decrement))

    async def psexpire(self) -> int:
        """Across all streams, remove pulled items whose expiry has passed; how many."""
        return await self._run(self.commands.psexpire())

    async def psnames(self) -> set[Any]:
        """The registered stream names."""
        return await self._run(self.commands.psnames())

    async def psdecay(self) -> set[Any]:
        """The names of the streams ever added to ``with_decay`` (good-redis's ``:ps:decay``)."""
        return await self._run(self.commands.psdecay())
