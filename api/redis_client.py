"""Redis clients with a bounded, blocking connection pool.

Under load a request that finds every connection busy waits a little for one (back-pressure)
instead of opening another or failing at once. A wait that runs out raises
:class:`PoolExhausted`, which says "busy", not "down": the cache steps around it for that
one call without declaring an outage.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.event import AsyncAfterConnectionReleasedEvent
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry


class PoolExhausted(RedisConnectionError):
    """Every pooled connection stayed busy for the whole wait: the server itself may be fine."""


class BoundedPool(BlockingConnectionPool):
    """A ``BlockingConnectionPool`` whose wait timeout raises :class:`PoolExhausted`.

    >>> pool = BoundedPool.from_url("redis://127.0.0.1:6379/0", max_connections=8, timeout=0.1)
    >>> pool.max_connections
    8

    A connection idle in the pool is handed out (and taken back) directly: the blocking
    pool's path, a condition, a timeout timer and connection-count bookkeeping on every
    command, cost more CPU than the command itself on a cache hit. Only when the pool is
    empty, or someone is already waiting, does a caller take that path (and wait at most
    ``timeout``); a release with waiters goes through it too, to wake one of them.
    """

    _waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._available_connections and not self._waiting and not self._in_maintenance:
            connection = self._available_connections.pop()
            self._in_use_connections.add(connection)
            try:
                # As the blocking pool does: a connection that was closed or has unread
                # data is reconnected (or refused) before anyone sends on it.
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._waiting += 1
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            # The blocking pool reports a wait that ran out as a ConnectionError caused by a
            # TimeoutError; a refused or failed connect has another cause (or none).
            if isinstance(exc.__cause__, TimeoutError):
                raise PoolExhausted(
                    f"all {self.max_connections} Redis connections busy for {self.timeout}s"
                ) from exc
            raise
        finally:
            self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        if self._waiting or self._in_maintenance or connection not in self._in_use_connections:
            await super().release(connection)
            return
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        self._available_connections.append(connection)
        if self._event_dispatcher is not None:
            # Listeners (re-authentication with streaming credentials) still hear of it.
            released = AsyncAfterConnectionReleasedEvent(connection)  # type: ignore[no-untyped-call]
            await self._event_dispatcher.dispatch_async(released)


def redis_client(
    url: str,
    *,
    pool_size: int,
    pool_timeout: float,
    socket_timeout: float | None,
    connect_timeout: float,
) -> Redis:
    """A client on its own bounded pool; closing the client closes the pool."""
    # No retries: a cache must answer fast or step aside, not wait out a dead server.
    pool = BoundedPool.from_url(
        url,
        max_connections=pool_size,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )
    return Redis.from_pool(pool)
