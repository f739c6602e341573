"""Redis clients with a bounded, blocking connection pool.

Under load a request that finds every connection busy waits a little for one (back-pressure)
instead of opening another or failing at once. A wait that runs out raises
:class:`PoolExhausted`, which says "busy", not "down": the cache steps around it for that
one call without declaring an outage.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry


class PoolExhausted(RedisConnectionError):
    """Every pooled connection stayed busy for the whole wait: the server itself may be fine."""


class BoundedPool(BlockingConnectionPool):
    """A ``BlockingConnectionPool`` whose wait timeout raises :class:`PoolExhausted`.

    >>> pool = BoundedPool.from_url("redis://127.0.0.1:6379/0", max_connections=8, timeout=0.1)
    >>> pool.max_connections
    8
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
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
