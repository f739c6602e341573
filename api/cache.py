"""Read-through cache with per-namespace generations, single flight and fail-open.

``Cache.cache_with_ttl(key, ttl, loader)`` returns the cached value or runs ``loader`` once,
however many callers miss at the same moment. ``Cache.invalidate(namespace)`` bumps the
namespace's generation counter, which is part of every key, so the next read on any instance
misses without scanning for keys; the old entries simply age out.

When the backend fails the cache opens: callers get the loader's value, the failure is logged
once per outage and counted, and the backend is retried after ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("dynoscope.cache")

Loader = Callable[[], Awaitable[Any]]
BytesLoader = Callable[[], Awaitable[bytes]]


class CacheBackend(Protocol):
    """Where cached bytes live: Redis across instances, or a dict in one process."""

    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        """Read the namespace generation ``g`` and the value at ``head + g + tail`` at once."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...
    async def bump(self, *keys: str) -> None:
        """Increment each counter (a namespace generation) by one."""
        ...

    async def ping(self) -> None: ...


class CacheObserver(Protocol):
    """Hooks for metrics: the result of each lookup and the time each operation took."""

    def on_lookup(self, cache: str, result: str) -> None: ...
    def on_operation(self, cache: str, operation: str, seconds: float) -> None: ...


class NullObserver:
    def on_lookup(self, cache: str, result: str) -> None:
        pass

    def on_operation(self, cache: str, operation: str, seconds: float) -> None:
        pass


# One round trip for a lookup: the generation and the value it points at.
_LOOKUP = """
local generation = redis.call('GET', KEYS[1]) or '0'
return {generation, redis.call('GET', ARGV[1] .. generation .. ARGV[2])}
"""


class RedisBackend:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._lookup = client.register_script(_LOOKUP)

    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        generation, value = await self._lookup(keys=[generation_key], args=[head, tail])
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
    """A per-process stand-in for Redis (embedded mode only: not shared across instances)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def _get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return value

    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        generation = int(self._get(generation_key) or b"0")
        return generation, self._get(f"{head}{generation}{tail}")

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._data[key] = (value, self._clock() + ttl)
        if len(self._data) > 10_000:
            self._evict_expired()

    async def bump(self, *keys: str) -> None:
        for key in keys:
            current = int(self._get(key) or b"0") + 1
            self._data[key] = (str(current).encode(), None)

    async def ping(self) -> None:
        return None

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]


class Cache:
    """A named read-through cache.

    >>> cache = Cache(backend=MemoryBackend(), name="properties", prefix="app:")
    >>> async def load(): return [1, 2, 3]
    >>> # await cache.cache_with_ttl("list:city=berlin", 300, load, namespace="properties")
    """

    def __init__(
        self,
        *,
        backend: CacheBackend,
        name: str,
        prefix: str = "",
        observer: CacheObserver | None = None,
        retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._backend = backend
        self._prefix = prefix
        self._observer: CacheObserver = observer or NullObserver()
        self._retry_after = retry_after
        self._clock = clock
        self._down_until: float | None = None
        self._pending_invalidations: set[str] = set()
        self._flights: dict[str, asyncio.Future[Any]] = {}

    @property
    def degraded(self) -> bool:
        return self._down_until is not None

    def set_observer(self, observer: CacheObserver) -> None:
        self._observer = observer

    def _generation_key(self, namespace: str) -> str:
        return f"{self._prefix}gen:{namespace}"

    async def cache_with_ttl(
        self, key: str, ttl: float, loader: Loader, *, namespace: str = "default"
    ) -> Any:
        """Return the cached value of ``key``, loading and storing it for ``ttl`` s on a miss.

        Values are JSON documents; use :meth:`cached_bytes` to keep a response body as is.
        """

        async def load_json() -> bytes:
            return json.dumps(await loader(), separators=(",", ":")).encode()

        return json.loads(await self.cached_bytes(key, ttl, load_json, namespace=namespace))

    async def cached_bytes(
        self, key: str, ttl: float, loader: BytesLoader, *, namespace: str = "default"
    ) -> bytes:
        """Like :meth:`cache_with_ttl` for a value that already is bytes (no re-encoding)."""
        full_key: str | None = None
        if await self._available():
            started = time.perf_counter()
            try:
                generation, value = await self._lookup(namespace, key)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._observer.on_operation(self.name, "get", time.perf_counter() - started)
                full_key = self._key(namespace, generation, key)
                if value is not None:
                    self._observer.on_lookup(self.name, "hit")
                    return value
                self._observer.on_lookup(self.name, "miss")
        flight_key = full_key or f"\0uncached:{namespace}:{key}"
        value = await self._single_flight(flight_key, lambda: self._load(full_key, ttl, loader))
        assert isinstance(value, bytes)
        return value

    async def _lookup(self, namespace: str, key: str) -> tuple[int, bytes | None]:
        return await self._backend.lookup(
            self._generation_key(namespace), f"{self._prefix}{namespace}:g", f":{key}"
        )

    def _key(self, namespace: str, generation: int, key: str) -> str:
        return f"{self._prefix}{namespace}:g{generation}:{key}"

    async def _load(self, full_key: str | None, ttl: float, loader: BytesLoader) -> bytes:
        value = await loader()
        if full_key is not None and self._down_until is None:
            started = time.perf_counter()
            try:
                await self._backend.set(full_key, value, ttl)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._observer.on_operation(self.name, "set", time.perf_counter() - started)
        return value

    async def _single_flight(self, key: str, run: Loader) -> Any:
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            value = await run()
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            del self._flights[key]

    async def invalidate(self, *namespaces: str) -> None:
        """Make every cached entry of these namespaces unreachable, on every instance."""
        self._pending_invalidations.update(namespaces)
        if await self._available():
            await self._flush_invalidations()

    async def _flush_invalidations(self) -> None:
        if not self._pending_invalidations:
            return
        pending = sorted(self._pending_invalidations)
        try:
            await self._backend.bump(*(self._generation_key(namespace) for namespace in pending))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._pending_invalidations.difference_update(pending)

    async def _available(self) -> bool:
        if self._down_until is None:
            return True
        if self._clock() < self._down_until:
            self._observer.on_lookup(self.name, "error")
            return False
        try:
            await self._backend.ping()
        except (RedisError, OSError) as exc:
            self._down_until = self._clock() + self._retry_after
            log.debug("cache %s still unavailable: %s", self.name, type(exc).__name__)
            self._observer.on_lookup(self.name, "error")
            return False
        self._down_until = None
        log.warning("cache %s: backend reachable again, caching resumed", self.name)
        # Writes made while the backend was down could not bump their generation:
        # bump it now, before serving anything cached from before the outage.
        await self._flush_invalidations()
        return self._down_until is None

    def _failed(self, exc: BaseException) -> None:
        self._observer.on_lookup(self.name, "error")
        if self._down_until is None:
            log.warning(
                "cache %s: backend unavailable (%s); serving from the database",
                self.name,
                type(exc).__name__,
            )
        self._down_until = self._clock() + self._retry_after


class NullCache(Cache):
    """Caching switched off (``CACHE_ENABLED=false``): every call runs the loader."""

    def __init__(self) -> None:
        super().__init__(backend=MemoryBackend(), name="disabled")

    async def cached_bytes(
        self, key: str, ttl: float, loader: BytesLoader, *, namespace: str = "default"
    ) -> bytes:
        return await loader()

    async def invalidate(self, *namespaces: str) -> None:
        return None
