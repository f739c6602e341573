"""``db_slow``: real lock contention, from a connection of the fault's own.

slow = DbSlow("postgresql+asyncpg://app@db/listings")
await slow.start(DbSlowParams(hold=2, period=10))   # returns once the lock is held
await slow.stop()                                   # rolled back: released at once

On PostgreSQL the lock is ``LOCK TABLE properties IN ACCESS EXCLUSIVE MODE``: every statement
on the table waits. On SQLite it is the database's write lock (``BEGIN IMMEDIATE``): in WAL
mode readers never wait, writes do (up to the service's 5 s busy timeout, then they fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy.engine import make_url

from api.faults.registry import FaultError

log = logging.getLogger("dynoscope.faults")


class DbSlowParams(BaseModel):
    """``{"hold": 2, "period": 10}``: hold the lock 2 s of every 10 s."""

    model_config = ConfigDict(extra="forbid")

    hold: float = Field(default=2.0, ge=0.1, le=60)
    period: float = Field(default=10.0, ge=0.1, le=3600)

    @field_validator("period")
    @classmethod
    def _not_shorter_than_hold(cls, value: float, info: ValidationInfo) -> float:
        hold = info.data.get("hold")
        if hold is not None and value < hold:
            raise ValueError("period must be at least hold")
        return value


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq URL asyncpg takes, from the service's SQLAlchemy URL.

    >>> asyncpg_dsn("postgresql+asyncpg://app:pw@db:5432/listings")
    'postgresql://app:pw@db:5432/listings'
    """
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _failure(*futures: asyncio.Future[Any]) -> str:
    """The name of the first error among ``futures`` (or that none came in time)."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            return type(future.exception()).__name__
    return "no lock in time"


class _Holder(Protocol):
    """One connection that takes the lock, holds it and lets it go."""

    errors: tuple[type[BaseException], ...]

    async def hold(self, seconds: float, held: Callable[[], None]) -> None:
        """Take the lock, call ``held``, keep it ``seconds``, release it (also when
        cancelled)."""

    async def close(self) -> None: ...


class _PostgresLock:
    """``LOCK TABLE`` in a transaction. The session's own timeouts are the backstop if this
    process hangs: the server ends a transaction idle for longer than ``hold`` + 5 s, and
    gives up a lock it cannot get in 5 s. If the process dies, its connection goes and the
    lock with it."""

    LOCK_TIMEOUT_MS = 5000
    BACKSTOP_MS = 5000
    errors: tuple[type[BaseException], ...] = (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    )

    def __init__(self, database_url: str, table: str, hold: float) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._statement = f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE'
        self._hold = hold
        self._connection: asyncpg.Connection | None = None

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(
                self._dsn,
                timeout=5,
                server_settings={
                    "application_name": "dynoscope-fault-db_slow",
                    "lock_timeout": str(self.LOCK_TIMEOUT_MS),
                    "idle_in_transaction_session_timeout": str(
                        int(self._hold * 1000) + self.BACKSTOP_MS
                    ),
                },
            )
        return self._connection

    async def hold(self, seconds: float, held: Callable[[], None]) -> None:
        connection = await self._connect()
        # Cancelling rolls the transaction back at once, which releases the lock.
        async with connection.transaction():
            await connection.execute(self._statement)
            held()
            await asyncio.sleep(seconds)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close(timeout=2)
            except Exception:  # whatever went wrong, the socket must go
                connection.terminate()


class _SqliteLock:
    """SQLite's write lock, ``BEGIN IMMEDIATE`` on a connection of its own (in a thread: the
    sqlite3 module blocks). If the process dies, the operating system drops the lock."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    LOCK_TIMEOUT_S = 5.0

    def __init__(self, database_url: str) -> None:
        database = make_url(database_url).database
        if not database or database == ":memory:":
            raise FaultError(409, "fault_unavailable", "db_slow needs a database file")
        self._path = database
        self._connection: sqlite3.Connection | None = None

    def _begin(self) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, timeout=self.LOCK_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        self._connection.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        if self._connection is not None and self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    async def hold(self, seconds: float, held: Callable[[], None]) -> None:
        await asyncio.to_thread(self._begin)
        try:
            held()
            await asyncio.sleep(seconds)
        finally:
            self._rollback()  # a local file lock: releasing it does not block

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class DbSlow:
    """Holds a lock on the service's database from a connection of its own: ``hold``
    seconds every ``period``."""

    name = "db_slow"
    params_model: ClassVar[type[BaseModel]] = DbSlowParams
    stops_with_process = True
    FIRST_LOCK_TIMEOUT = 10.0

    def __init__(self, database_url: str, *, table: str = "properties") -> None:
        self._url = database_url
        self._table = table
        self._task: asyncio.Task[None] | None = None
        self._holder: _Holder | None = None
        self.locks = 0
        self.failures = 0
        self.holding = False

    def unavailable(self) -> str | None:
        database = make_url(self._url).database
        if self._url.startswith("sqlite") and (not database or database == ":memory:"):
            return "db_slow needs a database file; DATABASE_URL is an in-memory SQLite"
        return None

    def _new_holder(self, hold: float) -> _Holder:
        if self._url.startswith("sqlite"):
            return _SqliteLock(self._url)
        return _PostgresLock(self._url, self._table, hold)

    async def start(self, params: DbSlowParams) -> None:
        """Returns once the first lock is held, so a request sent next waits on it."""
        self.locks = self.failures = 0
        holder = self._holder = self._new_holder(params.hold)
        first = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._cycle(holder, params, first), name="fault-db_slow")
        self._task = task
        # The cycle reports its first lock, or dies trying; either ends the wait.
        await asyncio.wait(
            [first, task], timeout=self.FIRST_LOCK_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        if first.done() and not first.cancelled() and first.exception() is None:
            return
        failure = _failure(first, task)
        await self.stop()
        raise FaultError(502, "fault_failed", f"db_slow: cannot lock {self._table}: {failure}")

    async def _cycle(
        self, holder: _Holder, params: DbSlowParams, first: asyncio.Future[None]
    ) -> None:
        while True:
            started = time.monotonic()
            try:
                await holder.hold(params.hold, lambda: self._held(first))
            except holder.errors as exc:
                if not first.done():
                    first.set_exception(exc)
                    return
                self.failures += 1
                log.warning("fault db_slow: lock cycle failed: %s", type(exc).__name__)
            finally:
                self.holding = False
            await asyncio.sleep(max(0.0, params.period - (time.monotonic() - started)))

    def _held(self, first: asyncio.Future[None]) -> None:
        self.locks += 1
        self.holding = True
        if not first.done():
            first.set_result(None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        holder, self._holder = self._holder, None
        if holder is not None:
            await holder.close()

    def figures(self) -> dict[str, Any]:
        return {"locks": self.locks, "failures": self.failures, "holding": self.holding}
