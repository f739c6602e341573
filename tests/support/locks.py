"""A real slow database for the API under test: another client holds the listings table.

The fault production makes: a migration, a long transaction or a batch job holds a lock, and
every request that writes a listing waits on it inside the database. A connection of this
helper's own takes the lock (PostgreSQL: ``LOCK TABLE properties IN ACCESS EXCLUSIVE MODE``;
SQLite: the database's write lock, ``BEGIN IMMEDIATE``), keeps it ``hold(step)`` seconds,
lets go, and takes it again, until the block ends. The API's own, instrumented engine then
sees ``INSERT`` statements on ``properties`` take as long as the lock is held, so the
slow-query counter, the latency histogram, exemplars and traces record what a slow query in
production would record. Nothing is added to the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiosqlite
import asyncpg
import httpx

from tests.support.users import listing

# The route whose requests wait on the held lock, as the latency histogram labels it.
WRITE_ROUTE = "/properties"


@contextlib.asynccontextmanager
async def table_held(
    database_url: str, *, hold: Callable[[int], float], gap: float = 0.2
) -> AsyncIterator[None]:
    """Hold the listings table ``hold(step)`` seconds at a time, ``gap`` s apart, in the
    background until the block ends; the lock is released at once when it does.

    The gap lets the waiting writers through: SQLite's waiters poll for the lock with growing
    sleeps, and would starve behind a holder that takes it straight back.
    """
    holder = asyncio.create_task(_hold(database_url, hold=hold, gap=gap))
    try:
        yield
    finally:
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder  # a holder that failed on its own fails the test here


async def _hold(database_url: str, *, hold: Callable[[int], float], gap: float) -> None:
    step = 0
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        async with aiosqlite.connect(path, isolation_level=None) as connection:
            while True:
                step += 1
                await connection.execute("BEGIN IMMEDIATE")
                try:
                    await asyncio.sleep(hold(step))
                finally:
                    await asyncio.shield(connection.execute("COMMIT"))
                await asyncio.sleep(gap)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            step += 1
            async with connection.transaction():
                await connection.execute("LOCK TABLE properties IN ACCESS EXCLUSIVE MODE")
                await asyncio.sleep(hold(step))
            await asyncio.sleep(gap)
    finally:
        await connection.close()


async def writer(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> None:
    """Create listings one after another, for ever: each waits out the lock."""
    while True:
        response = await client.post("/properties", json=listing(**fields), headers=headers)
        assert response.status_code in {201, 503}, response.text
