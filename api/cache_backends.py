"""Where cached bytes live: Redis across instances, or a bounded LRU in one process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from api.redis_client import COALESCE, CoalescingRedis


class CacheBackend(Protocol):
    """Storage of values (with a TTL) and of namespace generations (counters, no TTL)."""

    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        """Read the namespace generation ``g`` and the value at ``head + g + tail`` at once."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def bump(self, *keys: str) -> None:
        """Increment each counter (a namespace generation) by one."""
        ...

    async def ping(self) -> None: ...


# One round trip for a lookup: the generation and the value it points at.
_LOOKUP = """
local generation = redis.call('GET', KEYS[1]) or '0'
return {generation, redis.call('GET', ARGV[1] .. generation .. ARGV[2])}
"""


class RedisBackend:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._lookup = client.register_script(_LOOKUP)
        # Lookups share round trips with the other lookups of the same moment (see
        # CoalescingRedis); stores and invalidations, rarer, go on their own.
        self._coalesce = {COALESCE: True} if isinstance(client, CoalescingRedis) else {}

    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        # EVALSHA straight away (the registered script's call re-packs its arguments on
        # every call); a server that does not know the script yet gets it loaded.
        try:
            reply = await self._client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self._lookup.sha, 1, generation_key, head, tail, **self._coalesce
            )
        except NoScriptError:
            reply = await self._lookup(keys=[generation_key], args=[head, tail])
        generation, value = reply
        return int(generation), value if value else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._client.set(key, value, px=max(1, int(ttl * 1000)))

    async def bump(self, *keys: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incr(key)
            await pipe.execute()

    async def ping(self) -> None:
        await self._client.ping()


class MemoryBackend:
    """A per-process stand-in for Redis (embedded mode only: not shared across instances).

    At most ``max_entries`` values are kept, the least recently used going first, and as
    many namespace generations. A generation that is forgotten must never come back lower
    than it was (an old entry would become reachable again), so every unknown namespace
    reads as one more than the highest generation ever forgotten.

    >>> backend = MemoryBackend(max_entries=2)
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, max_entries: int = 10_000
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._max_entries = max_entries
        self._values: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._generations: OrderedDict[str, int] = OrderedDict()
        self._floor = 0

    def __len__(self) -> int:
        """Values and generations held."""
        return len(self._values) + len(self._generations)

    def _generation(self, key: str) -> int:
        generation = self._generations.get(key)
        if generation is None:
            return self._floor
        self._generations.move_to_end(key)
        return generation

    def _get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires <= self._clock():
            del self._values[key]
            return None
        self._values.move_to_end(key)
        return value

    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        generation = self._generation(generation_key)
        return generation, self._get(f"{head}{generation}{tail}")

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = (value, self._clock() + ttl)
        self._values.move_to_end(key)
        while len(self._values) > self._max_entries:
            self._values.popitem(last=False)

    async def bump(self, *keys: str) -> None:
        for key in keys:
            self._generations[key] = self._generation(key) + 1
            self._generations.move_to_end(key)
        while len(self._generations) > self._max_entries:
            _, forgotten = self._generations.popitem(last=False)
            self._floor = max(self._floor, forgotten + 1)

    async def ping(self) -> None:
        return None
