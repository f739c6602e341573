"""Redis clients with a bounded, blocking connection pool, and lookups that share round trips.

Under load a request that finds every connection busy waits a little for one (back-pressure)
instead of opening another or failing at once. A wait that runs out raises
:class:`PoolExhausted`, which says "busy", not "down": the cache steps around it for that
one call without declaring an outage. Commands marked for it (the cache's lookups) that are
issued at the same moment go out together on one connection (:class:`CoalescingRedis`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.event import AsyncAfterConnectionReleasedEvent
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


class PoolExhausted(RedisConnectionError):
    """Every pooled connection stayed busy for the whole wait: the server itself may be fine."""


class DirectWrite:
    """Connection mixin: a command the socket takes whole is written without a timer task.

    With a socket timeout, redis-py bounds every write with ``asyncio.wait_for``, which
    starts a task and a timer per command even though a small write to a socket with an
    empty buffer never waits. Here such a write goes straight to the transport; only bytes
    the socket did not take at once are waited for, through the library's own bounded path.
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        connection: Any = self
        writer = connection._writer
        if (
            writer is not None
            and connection.socket_timeout
            and isinstance(command, bytes | list)
            and not writer.transport.is_closing()
            and not writer.transport.get_write_buffer_size()
        ):
            if check_health:
                await connection.check_health()
            if connection._writer is writer and not writer.transport.is_closing():
                writer.writelines([command] if isinstance(command, bytes) else command)
                if not writer.transport.get_write_buffer_size():
                    return
                command, check_health = [], False  # the rest: drained, bounded, by the library
        await super().send_packed_command(command, check_health)  # type: ignore[misc]


_DIRECT_WRITE: dict[type, type] = {}


def _direct_write(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` (TCP, TLS or Unix socket, as the URL says) with :class:`DirectWrite`."""
    if base not in _DIRECT_WRITE:
        _DIRECT_WRITE[base] = type(base.__name__, (DirectWrite, base), {})
    return _DIRECT_WRITE[base]


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

    def __init__(self, **kwargs: Any) -> None:
        kwargs["connection_class"] = _direct_write(kwargs.get("connection_class", Connection))
        super().__init__(**kwargs)

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
        if (
            self._event_dispatcher is not None
            and getattr(connection, "_re_auth_token", None) is not None
        ):
            # Its only listener re-authenticates a connection holding a new token (streaming
            # credentials); without one there is nothing to do.
            released = AsyncAfterConnectionReleasedEvent(connection)  # type: ignore[no-untyped-call]
            await self._event_dispatcher.dispatch_async(released)


COALESCE = "coalesce"
MAX_BATCH = 128

_Batch = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]


class CoalescingRedis(Redis):
    """A client whose commands marked ``coalesce=True`` share round trips.

    >>> client = CoalescingRedis.from_url("redis://127.0.0.1:6379/0")
    >>> # await client.execute_command("GET", "key", coalesce=True)

    Under load many requests look the cache up in the same event-loop iteration. Sent one by
    one, each takes a connection, a system call each way and a wake-up of the loop for its
    reply, which costs more CPU than everything else a cached read does. Marked commands
    issued in one iteration are instead written together on one pooled connection and their
    replies read in order (pipelining, as ``pipeline(transaction=False)`` does, but across
    callers). Each stays its own command: a script still runs atomically, an error reply goes
    to its caller only, and a connection that fails fails the commands still waiting on it
    with the error each would have had alone. A lone command makes a batch of one (a future
    and a task more than a plain call). Batches hold at most ``MAX_BATCH`` commands.
    """

    _pending: _Batch | None = None
    _round_trips: set[asyncio.Task[None]] | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if not options.pop(COALESCE, False):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        batch = self._pending
        if batch is None:
            batch = self._pending = []
            loop.call_soon(self._send, batch)
        batch.append((args, reply))
        if len(batch) >= MAX_BATCH:
            self._pending = None  # the next command starts another batch
        return await reply

    def _send(self, batch: _Batch) -> None:
        if self._pending is batch:
            self._pending = None
        if self._round_trips is None:
            self._round_trips = set()
        task = asyncio.ensure_future(self._round_trip(batch))
        self._round_trips.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._round_trips.discard)

    async def _round_trip(self, batch: _Batch) -> None:
        answered = 0
        try:
            connection = await self.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.send_packed_command(
                    connection.pack_commands([args for args, _ in batch])
                )
                for _, reply in batch:
                    try:
                        value = await connection.read_response()
                    except ResponseError as exc:  # this command's error: the next reply follows
                        _settle(reply, exc)
                    else:
                        _settle(reply, value)
                    answered += 1
            finally:
                await self.connection_pool.release(connection)
        except BaseException as exc:
            for _, reply in batch[answered:]:
                _settle(reply, exc)
            if not isinstance(exc, Exception):
                raise


def _settle(reply: asyncio.Future[Any], outcome: Any) -> None:
    if reply.done():
        return  # its caller went away (cancelled)
    if isinstance(outcome, asyncio.CancelledError):
        reply.cancel()
    elif isinstance(outcome, BaseException):
        reply.set_exception(outcome)
    else:
        reply.set_result(outcome)


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
    return CoalescingRedis.from_pool(pool)
