"""``db_slow``: real lock contention on PostgreSQL, from a connection of the fault's own.

slow = DbSlow("postgresql+asyncpg://app@db/listings")
await slow.start(DbSlowParams(hold=2, period=10))   # returns once the lock is held
await slow.stop()                                   # rolled back: released at once
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, ClassVar

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


class DbSlow:
    """Holds an ACCESS EXCLUSIVE lock on ``table`` from a connection of its own.

    The session's own timeouts are the backstop if this process hangs: the server ends a
    transaction idle for longer than ``hold`` + 5 s, and gives up a lock it cannot get in
    5 s. If the process dies, its connection goes and the lock with it.
    """

    name = "db_slow"
    params_model: ClassVar[type[BaseModel]] = DbSlowParams
    stops_with_process = True
    LOCK_TIMEOUT_MS = 5000
    BACKSTOP_MS = 5000

    def __init__(self, database_url: str, *, table: str = "properties") -> None:
        self._url = database_url
        self._table = table
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self.locks = 0
        self.failures = 0
        self.holding = False

    def unavailable(self) -> str | None:
        if self._url.startswith("sqlite"):
            # In WAL mode SQLite readers never wait for a writer: no lock would slow them.
            return "db_slow needs PostgreSQL; DATABASE_URL is SQLite"
        return None

    async def _connect(self, hold: float) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(
            asyncpg_dsn(self._url),
            timeout=5,
            server_settings={
                "application_name": "dynoscope-fault-db_slow",
                "lock_timeout": str(self.LOCK_TIMEOUT_MS),
                "idle_in_transaction_session_timeout": str(int(hold * 1000) + self.BACKSTOP_MS),
            },
        )
        return connection

    async def start(self, params: DbSlowParams) -> None:
        """Returns once the first lock is held, so a request sent next waits on it."""
        self.locks = self.failures = 0
        try:
            self._connection = await self._connect(params.hold)
        except (OSError, asyncpg.PostgresError) as exc:
            raise FaultError(
                502, "fault_failed", f"db_slow: cannot connect: {type(exc).__name__}"
            ) from None
        first = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._cycle(params, first), name="fault-db_slow")
        self._task = task
        # The cycle reports its first lock, or dies trying; either ends the wait.
        await asyncio.wait(
            [first, task], timeout=self.LOCK_TIMEOUT_MS / 1000 + 5, return_when="FIRST_COMPLETED"
        )
        if first.done() and not first.cancelled() and first.exception() is None:
            return
        failure = _failure(first, task)
        await self.stop()
        raise FaultError(502, "fault_failed", f"db_slow: cannot lock {self._table}: {failure}")

    async def _cycle(self, params: DbSlowParams, first: asyncio.Future[None]) -> None:
        statement = f'LOCK TABLE "{self._table}" IN ACCESS EXCLUSIVE MODE'
        while True:
            started = time.monotonic()
            try:
                if self._connection is None or self._connection.is_closed():
                    self._connection = await self._connect(params.hold)
                async with self._connection.transaction():
                    await self._connection.execute(statement)
                    self.locks += 1
                    self.holding = True
                    if not first.done():
                        first.set_result(None)
                    await asyncio.sleep(params.hold)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if not first.done():
                    first.set_exception(exc)
                    return
                self.failures += 1
                log.warning("fault db_slow: lock cycle failed: %s", type(exc).__name__)
            finally:
                self.holding = False
            await asyncio.sleep(max(0.0, params.period - (time.monotonic() - started)))

    async def stop(self) -> None:
        # Cancelling rolls the transaction back at once, which releases the lock.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close(timeout=2)
            except Exception:  # whatever went wrong, the socket must go
                connection.terminate()

    def figures(self) -> dict[str, Any]:
        return {"locks": self.locks, "failures": self.failures, "holding": self.holding}
