"""Who may evaluate and send: a lease with a fencing token, held in the alert store.

Several engines (``dynoscope alerts run`` on one or several hosts) share one store; exactly one
holds the lease and is the leader. The lease is one row: its holder, a token that grows by one
at every change of holder, and an expiry by the *database's* clock, so hosts whose clocks
disagree still agree on when it has run out. A standby takes the row only once it has expired.

The leader renews it every third of its length and, by its own monotonic clock, counts it as
held only until ``ttl`` after it *asked* for the last renewal, which is before the expiry the
database wrote: a leader cut off from the store stops sending before a standby may start.
Every store write carries the token (``Fence``) and is refused once another engine has taken
the lease (``alerts.errors.LeaseLost``), so a paused leader can never overwrite its successor.

    >>> lease = HostLease()          # one engine per host, guaranteed by a lock file
    >>> lease.remaining() > 0 and lease.fence() is None
    True
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ColumnElement, Float, case, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import func
from sqlalchemy.sql.dml import Insert

from alerts.errors import LeaseLost
from alerts.store.schema import lease as lease_table

ENGINE_LEASE = "engine"


def holder_name() -> str:
    """Names this engine in the lease row: host, process id and a random part (two engines
    in one process are two holders)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Fence:
    """What a store write must prove: the lease it holds and the token it holds it with."""

    lease: str
    holder: str
    token: int


class Lease(Protocol):
    """Leadership as the outbox and the writer see it."""

    def remaining(self) -> float:
        """Seconds this engine may still act as leader (0 when it is not the leader), also
        while it acts without the store (``StoreLease.open_for``)."""
        ...

    def writes(self) -> bool:
        """Whether this engine may write to the store now (it holds the store's lease)."""
        ...

    def fence(self) -> Fence | None:
        """The token store writes must carry, or ``None`` when nothing needs fencing."""
        ...

    def drop(self) -> None:
        """Stop counting the lease as held: the store refused a write, another engine leads."""
        ...


class HostLease:
    """Always held: for the in-process engine, whose lock file already makes it the only one."""

    holder = "host"

    def remaining(self) -> float:
        return math.inf

    def writes(self) -> bool:
        return True

    def fence(self) -> Fence | None:
        return None

    def drop(self) -> None:
        """Nothing to drop: no write of a host-held engine is ever fenced."""


def database_now(dialect: str) -> ColumnElement[float]:
    """The database's clock in seconds since the epoch."""
    if dialect == "postgresql":
        return func.extract("epoch", func.clock_timestamp()).cast(Float)
    return (func.julianday("now") - 2440587.5) * 86400.0


class StoreLease:
    """The lease row ``name`` in the store ``engine``, held by ``holder`` for ``ttl`` seconds.

    ``acquire`` takes it when it is free or expired and renews it when held; ``release`` lets
    a standby take it at once (on a clean stop).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl: float,
        holder: str | None = None,
        name: str = ENGINE_LEASE,
    ) -> None:
        self.engine = engine
        self.ttl = ttl
        self.holder = holder or holder_name()
        self.name = name
        self.token: int | None = None
        # The highest token this engine has seen in the row, as holder or as standby.
        self.seen_token: int | None = None
        # Whether the last acquire took the lease back after it lapsed, with nobody holding it
        # in between (see ``acquire``).
        self.resumed = False
        self._valid_until = 0.0
        self._open_until = 0.0

    def remaining(self) -> float:
        """Seconds left of the store's lease, or of acting without the store (fail-open)."""
        return max(0.0, max(self._valid_until, self._open_until) - time.monotonic())

    def held(self) -> float:
        """Seconds left of the store's lease alone."""
        return max(0.0, self._valid_until - time.monotonic())

    def writes(self) -> bool:
        return self.held() > 0

    def open_for(self, seconds: float) -> None:
        """Act without the store for ``seconds`` (0: stop): the election found the store
        unreachable for longer than a lease and no peer that reaches it. Nothing is written
        meanwhile; the fencing token stays the last one held."""
        self._open_until = time.monotonic() + seconds if seconds > 0 else 0.0

    def fence(self) -> Fence | None:
        if self.token is None:
            return Fence(lease=self.name, holder=self.holder, token=-1)
        return Fence(lease=self.name, holder=self.holder, token=self.token)

    def drop(self) -> None:
        """Stop counting the lease as held (the store refused a write: someone else has it)."""
        self._valid_until = 0.0
        self._open_until = 0.0

    async def acquire(self) -> bool:
        """Take or renew the lease; True while this engine holds it."""
        asked = time.monotonic()
        continuing = self.held() > 0
        previous = self.token
        table = lease_table
        async with self.engine.begin() as connection:
            dialect = connection.dialect.name
            now = database_now(dialect)
            await connection.execute(_insert_missing(dialect, self.name))
            mine = table.c.holder == self.holder
            kept: ColumnElement[bool]
            if continuing and self.token is not None:
                kept = mine & (table.c.token == self.token)
            else:
                kept = literal(False)
            result = await connection.execute(
                update(table)
                .where(table.c.name == self.name, mine | (table.c.expires_at < now))
                .values(
                    holder=self.holder,
                    token=case((kept, table.c.token), else_=table.c.token + 1),
                    expires_at=now + self.ttl,
                )
                .returning(table.c.token)
            )
            token = result.scalar_one_or_none()
            if token is None:
                current = await connection.execute(
                    select(table.c.token).where(table.c.name == self.name)
                )
                self._saw(current.scalar_one_or_none())
        if token is None:
            self.token = None
            self.resumed = False
            self._valid_until = 0.0
            return False
        self.token = int(token)
        # Every new term adds one to the token: taken back at exactly one more than this
        # engine's last term, nobody held the lease in between (nor wrote to the store).
        self.resumed = not continuing and previous is not None and self.token == previous + 1
        self._saw(self.token)
        # From when it was asked, not answered: the database's expiry is later than this.
        self._valid_until = asked + self.ttl
        return True

    def _saw(self, token: object) -> None:
        if isinstance(token, int) and (self.seen_token is None or token > self.seen_token):
            self.seen_token = token

    async def release(self) -> None:
        """Give the lease up (expire it now) if this engine still holds it."""
        if self.token is None:
            return
        table = lease_table
        async with self.engine.begin() as connection:
            await connection.execute(
                update(table)
                .where(
                    table.c.name == self.name,
                    table.c.holder == self.holder,
                    table.c.token == self.token,
                )
                .values(expires_at=0.0)
            )
        self.token = None
        self._valid_until = 0.0


async def check_fence(connection: AsyncConnection, fence: Fence) -> None:
    """Inside a write's transaction: raise ``LeaseLost`` unless ``fence`` is still current.

    The no-op update locks the lease row until the write commits, so a standby cannot take the
    lease between this check and the commit; its own load then sees this write.
    """
    table = lease_table
    result = await connection.execute(
        update(table)
        .where(
            table.c.name == fence.lease,
            table.c.holder == fence.holder,
            table.c.token == fence.token,
        )
        .values(token=table.c.token)
    )
    if result.rowcount != 1:
        raise LeaseLost(lease=fence.lease, holder=fence.holder, token=fence.token)


def _insert_missing(dialect: str, name: str) -> Insert:
    row = {"name": name, "holder": "", "token": 0, "expires_at": 0.0}
    if dialect == "postgresql":
        return (
            postgresql.insert(lease_table)
            .values(row)
            .on_conflict_do_nothing(index_elements=["name"])
        )
    return sqlite.insert(lease_table).values(row).on_conflict_do_nothing(index_elements=["name"])
