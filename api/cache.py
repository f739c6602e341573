"""Read-through cache with per-namespace generations, single flight and fail-open.

``Cache.cache_with_ttl(key, ttl, loader)`` returns the cached value or runs ``loader`` once,
however many callers miss at the same moment. ``Cache.invalidate(namespace)`` bumps the
namespace's generation counter, which is part of every key, so the next read on any instance
misses without scanning for keys; the old entries simply age out.

When the backend fails the cache opens: callers get the loader's value, the failure is logged
once per outage and counted, and the backend is retried after ``retry_after`` seconds. A pool
with every connection busy is not an outage: that one call goes to the loader, nothing opens.
A load runs in a task of its own, so a caller that goes away (cancelled) leaves it running
for the others waiting on it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from api.cache_backends import CacheBackend, MemoryBackend, RedisBackend
from api.redis_client import PoolExhausted

__all__ = [
    "BytesLoader",
    "Cache",
    "CacheBackend",
    "CacheObserver",
    "Loader",
    "MemoryBackend",
    "NullCache",
    "NullObserver",
    "RedisBackend",
]

log = logging.getLogger("dynoscope.cache")

Loader = Callable[[], Awaitable[Any]]
BytesLoader = Callable[[], Awaitable[bytes]]


class CacheObserver(Protocol):
    """Hooks for metrics: the result of each lookup and the time each operation took."""

    def on_lookup(self, cache: str, result: str) -> None: ...
    def on_operation(self, cache: str, operation: str, seconds: float) -> None: ...


class NullObserver:
    def on_lookup(self, cache: str, result: str) -> None:
        pass

    def on_operation(self, cache: str, operation: str, seconds: float) -> None:
        pass


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
        self._flights: dict[str, asyncio.Future[bytes]] = {}

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
        healthy = self._down_until is None and not self._pending_invalidations
        if healthy or await self._available():
            started = time.perf_counter()
            try:
                generation, value = await self._backend.lookup(
                    f"{self._prefix}gen:{namespace}", f"{self._prefix}{namespace}:g", f":{key}"
                )
            except PoolExhausted:
                self._observer.on_lookup(self.name, "error")  # busy, not down: this call only
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._observer.on_operation(self.name, "get", time.perf_counter() - started)
                if value is not None:
                    self._observer.on_lookup(self.name, "hit")
                    return value
                self._observer.on_lookup(self.name, "miss")
                full_key = f"{self._prefix}{namespace}:g{generation}:{key}"
        flight_key = full_key or f"\0uncached:{namespace}:{key}"
        return await self._single_flight(flight_key, lambda: self._load(full_key, ttl, loader))

    async def _load(self, full_key: str | None, ttl: float, loader: BytesLoader) -> bytes:
        value = await loader()
        if full_key is not None and self._down_until is None:
            started = time.perf_counter()
            try:
                await self._backend.set(full_key, value, ttl)
            except PoolExhausted:
                pass  # the next miss stores it
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._observer.on_operation(self.name, "set", time.perf_counter() - started)
        return value

    async def _single_flight(self, key: str, run: BytesLoader) -> bytes:
        # The load runs in its own task, which every caller awaits through a shield: when
        # the caller that started it is cancelled (its client went away), the load goes on
        # and the others still get its answer.
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(run())
            self._flights[key] = flight
            flight.add_done_callback(functools.partial(self._landed, key))
        return await asyncio.shield(flight)

    def _landed(self, key: str, flight: asyncio.Future[bytes]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # mark retrieved: the callers re-raise it, nobody else must

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
        except PoolExhausted:
            return  # still pending: reads bypass the cache until a flush gets through
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._pending_invalidations.difference_update(pending)

    async def _available(self) -> bool:
        if self._down_until is None:
            if self._pending_invalidations:
                # A write the busy pool could not announce yet: no cached read until it is.
                await self._flush_invalidations()
                if self._pending_invalidations:
                    self._observer.on_lookup(self.name, "error")
                    return False
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
        return self._down_until is None and not self._pending_invalidations

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
