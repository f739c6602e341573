"""Client spans for Redis commands, on one ``redis.asyncio.Redis`` client.

Only the command name is recorded: keys and values may hold user data.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from instrumentation.tracing import Tracing, sampled_parent

_MARK = "_dynoscope_traced"


def instrument_redis(client: Redis, *, tracing: Tracing) -> None:
    """Trace ``client``'s commands as children of the current (sampled) request.

    The client's ``execute_command`` is wrapped on this instance only; calls outside a
    sampled request pass straight through.
    """
    if getattr(client, _MARK, False):
        return
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    connection = client.connection_pool.connection_kwargs
    attributes = {
        "db.system.name": "redis",
        "server.address": str(connection.get("host", "")),
        "db.namespace": str(connection.get("db", 0)),
    }

    @functools.wraps(execute)
    async def traced(*args: Any, **options: Any) -> Any:
        parent = sampled_parent()
        if parent is None:
            return await execute(*args, **options)
        command = str(args[0]).upper() if args else "COMMAND"
        start = time.time_ns()
        error: BaseException | None = None
        try:
            return await execute(*args, **options)
        except BaseException as exc:
            error = exc
            raise
        finally:
            tracing.record(
                f"redis {command}",
                parent=parent,
                kind=SpanKind.CLIENT,
                start_ns=start,
                end_ns=time.time_ns(),
                attributes={**attributes, "db.operation.name": command},
                error=error,
            )

    client.execute_command = traced  # type: ignore[method-assign]
    setattr(client, _MARK, True)
