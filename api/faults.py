"""Fault injection: make this instance, or its dependencies, misbehave on purpose.

Off unless ``DYNOSCOPE_FAULTS_ENABLED=true`` (see docs/faults.md); admin-only.

    faults = build_faults(settings)
    await faults.switch_on("memory_leak", {"rate_mb_per_min": 120, "cap_mb": 256})
    faults.listing()   # [{"name": "memory_leak", "active": True, "since": "...", ...}, ...]
    await faults.switch_off("memory_leak")

- ``db_slow``: a dedicated connection (not from the app's pool) holds ``LOCK TABLE
  properties IN ACCESS EXCLUSIVE MODE`` for ``hold`` seconds every ``period`` seconds, so the
  service's own queries wait on a real lock. PostgreSQL only.
- ``memory_leak``: allocates and keeps memory (``rate_mb_per_min`` up to ``cap_mb``).
- external faults (``db_down``, ``redis_down``, ``instance_kill``, ...): commands from
  ``DYNOSCOPE_FAULT_COMMANDS`` (``api.fault_commands``).

The faults of this process stop with it; external faults stay as their commands left them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy.engine import make_url

from api.fault_commands import (
    EXTERNAL,
    CommandError,
    FaultCommand,
    load_fault_commands,
    run_command,
)
from api.settings import Settings

log = logging.getLogger("dynoscope.faults")

MEGABYTE = 1024 * 1024


class FaultError(Exception):
    """A refusal or failure with its HTTP status and JSON error code."""

    def __init__(self, status_code: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.extra = extra


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fault(Protocol):
    name: str
    params_model: ClassVar[type[BaseModel]]
    # False: the fault is outside this process (a stopped database) and outlives it.
    stops_with_process: bool

    def unavailable(self) -> str | None:
        """Why the fault cannot be switched on here, or None."""

    async def start(self, params: Any) -> None: ...

    async def stop(self) -> None: ...

    def figures(self) -> dict[str, Any]:
        """Live figures for the listing (locks taken, memory held, ...)."""


@dataclass
class _State:
    active: bool = False
    since: datetime | None = None
    params: dict[str, Any] | None = None


class Faults:
    """The faults of one process by name; switching is serialised per fault."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        self._faults = {fault.name: fault for fault in faults}
        self._states = {name: _State() for name in self._faults}
        self._locks = {name: asyncio.Lock() for name in self._faults}
        self._gauge: Callable[[str, bool], None] = lambda name, active: None

    @property
    def names(self) -> list[str]:
        return list(self._faults)

    def observe(self, gauge: Callable[[str, bool], None]) -> None:
        """Report every fault's state (now, and on each change) to ``gauge``."""
        self._gauge = gauge
        for name, state in self._states.items():
            gauge(name, state.active)

    def _get(self, name: str) -> Fault:
        fault = self._faults.get(name)
        if fault is None:
            known = ", ".join(sorted(self._faults))
            raise FaultError(404, "not_found", f"no fault named {name!r} (known: {known})")
        return fault

    async def switch_on(self, name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Start ``name`` with ``raw`` params (pydantic ValidationError when bad); switching
        an active fault on again restarts it with the new params."""
        fault = self._get(name)
        reason = fault.unavailable()
        if reason is not None:
            raise FaultError(409, "fault_unavailable", reason)
        params = fault.params_model.model_validate(dict(raw))
        async with self._locks[name]:
            state = self._states[name]
            if state.active and fault.stops_with_process:
                await fault.stop()
                self._set(name, _State())
            await fault.start(params)
            self._set(name, _State(True, datetime.now(UTC), params.model_dump()))
        log.warning("fault %s switched on", name)
        return self.describe(name)

    async def switch_off(self, name: str) -> dict[str, Any]:
        """Stop ``name``; an external fault runs its ``off`` command even if it looks off
        (the process may have restarted since it was switched on)."""
        fault = self._get(name)
        async with self._locks[name]:
            wanted = self._states[name].active or not fault.stops_with_process
            if wanted and fault.unavailable() is None:
                await fault.stop()
            self._set(name, _State())
        log.warning("fault %s switched off", name)
        return self.describe(name)

    def _set(self, name: str, state: _State) -> None:
        self._states[name] = state
        self._gauge(name, state.active)

    def describe(self, name: str) -> dict[str, Any]:
        fault, state = self._faults[name], self._states[name]
        return {
            "name": name,
            "active": state.active,
            "since": state.since.isoformat() if state.since else None,
            "params": state.params,
            "available": fault.unavailable() is None,
            "reason": fault.unavailable(),
            **fault.figures(),
        }

    def listing(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self._faults]

    async def close(self) -> None:
        """Stop this process's own faults (at shutdown): no lock or memory outlives it."""
        for name, fault in self._faults.items():
            if fault.stops_with_process and self._states[name].active:
                await fault.stop()
                self._set(name, _State())


# --- memory_leak ---------------------------------------------------------------------


class MemoryLeakParams(BaseModel):
    """``{"rate_mb_per_min": 60, "cap_mb": 256}``."""

    model_config = ConfigDict(extra="forbid")

    rate_mb_per_min: float = Field(default=60.0, gt=0, le=60_000)
    cap_mb: int = Field(default=256, ge=1, le=16_384)


class MemoryLeak:
    """Allocates ``rate_mb_per_min`` and keeps it, up to ``cap_mb``; stopping frees it all."""

    name = "memory_leak"
    params_model: ClassVar[type[BaseModel]] = MemoryLeakParams
    stops_with_process = True

    def __init__(self, *, tick: float = 0.25) -> None:
        self._tick = tick
        self._chunks: list[bytes] = []
        self._held = 0
        self._task: asyncio.Task[None] | None = None

    def unavailable(self) -> str | None:
        return None

    async def start(self, params: MemoryLeakParams) -> None:
        self._task = asyncio.create_task(self._grow(params), name="fault-memory_leak")

    async def _grow(self, params: MemoryLeakParams) -> None:
        cap = params.cap_mb * MEGABYTE
        per_tick = params.rate_mb_per_min * MEGABYTE * self._tick / 60
        owed = 0.0
        while self._held < cap:
            owed += per_tick
            size = min(int(owed), cap - self._held)
            if size > 0:
                # Filled, not just reserved: untouched pages would not count as resident.
                self._chunks.append(b"\xa5" * size)
                self._held += size
                owed -= size
            await asyncio.sleep(self._tick)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._chunks.clear()
        self._held = 0

    def figures(self) -> dict[str, Any]:
        return {"held_mb": round(self._held / MEGABYTE, 1)}


# --- db_slow -------------------------------------------------------------------------


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


# --- external faults -----------------------------------------------------------------


class ExternalFault:
    """Runs the deployment's ``on``/``off`` command (``DYNOSCOPE_FAULT_COMMANDS``)."""

    params_model: ClassVar[type[BaseModel]] = NoParams
    stops_with_process = False

    def __init__(self, name: str, command: FaultCommand | None) -> None:
        self.name = name
        self._command = command
        self.last_output = ""

    def unavailable(self) -> str | None:
        if self._command is None:
            return f"{self.name} is not configured: add it to DYNOSCOPE_FAULT_COMMANDS"
        return None

    async def start(self, params: NoParams) -> None:
        await self._run("on")

    async def stop(self) -> None:
        await self._run("off")

    async def _run(self, switch: str) -> None:
        assert self._command is not None
        argv = self._command.on if switch == "on" else self._command.off
        timeout = self._command.timeout
        # The argv may hold secrets (passwords, URLs): only the fault's name is logged.
        log.warning("fault %s: running its %s command", self.name, switch)
        try:
            result = await run_command(argv, seconds=timeout)
        except CommandError as exc:
            raise FaultError(
                500, "fault_command_failed", f"{self.name} {switch}: cannot run the command: {exc}"
            ) from None
        self.last_output = result.output
        if result.returncode is None:
            detail = f"{self.name} {switch}: the command timed out after {timeout:g} s"
        elif result.returncode != 0:
            detail = f"{self.name} {switch}: the command exited with status {result.returncode}"
        else:
            return
        log.error("fault %s: %s command failed", self.name, switch)
        raise FaultError(502, "fault_command_failed", detail, output=result.output)

    def figures(self) -> dict[str, Any]:
        return {}


def build_faults(settings: Settings) -> Faults:
    """Every fault this deployment offers: built-in ones and those of the commands file."""
    commands = load_fault_commands(settings.fault_commands) if settings.fault_commands else {}
    external = [ExternalFault(name, commands.get(name)) for name in EXTERNAL]
    external += [ExternalFault(n, c) for n, c in commands.items() if n not in EXTERNAL]
    return Faults([DbSlow(settings.database_url), MemoryLeak(), *external])
