"""The engine's own store: alert state, history and the notification outbox.

The engine never waits on it to evaluate or to deliver: memory is the authority while the
engine runs (``alerts.engine.ledger``) and ``alerts.store.writer`` writes changes behind.
Every write is idempotent (state is replaced per rule, history and outbox rows carry ids
made by the engine), so a batch retried after an unclear failure changes nothing twice. At
start the engine loads what the store holds, so a restart keeps timers and the undelivered
outbox.

``ALERT_STORE_URL`` names it: a SQLite file of its own in embedded mode, any PostgreSQL
database in production (best not the service's own, which is what the engine watches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, delete, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.dml import Insert

from alerts.delivery.notification import Delivery
from alerts.engine.query import labels_of
from alerts.engine.state import Alert, AlertState
from alerts.store.lease import Fence, check_fence
from alerts.store.schema import history, outbox, states


@dataclass(frozen=True)
class HistoryEntry:
    """One transition of one alert."""

    id: str
    rule: str
    fingerprint: str
    labels: dict[str, str]
    state: AlertState
    value: float | None
    at: datetime
    annotations: dict[str, str]

    @classmethod
    def of(cls, alert: Alert, *, id: str, at: datetime) -> HistoryEntry:
        return cls(
            id=id,
            rule=alert.rule,
            fingerprint=alert.fingerprint,
            labels=dict(alert.labels),
            state=alert.state,
            value=_number(alert.value),
            at=at,
            annotations=dict(alert.annotations),
        )


@dataclass
class Changes:
    """What the store has not seen yet: per rule its whole active set, new history, and the
    latest version of each delivery."""

    states: dict[str, tuple[Alert, ...]] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    deliveries: dict[str, Delivery] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.states or self.history or self.deliveries)

    def __len__(self) -> int:
        return len(self.states) + len(self.history) + len(self.deliveries)

    def under(self, newer: Changes) -> Changes:
        """These (older, unwritten) changes with ``newer`` ones applied on top."""
        return Changes(
            states={**self.states, **newer.states},
            history=[*self.history, *newer.history],
            deliveries={**self.deliveries, **newer.deliveries},
        )


@dataclass(frozen=True)
class Snapshot:
    """What the store held at start: active alerts by rule, unfinished deliveries in order."""

    alerts: dict[str, tuple[Alert, ...]]
    deliveries: tuple[Delivery, ...]


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def upsert(dialect: str, table: Table, *, update: bool) -> Insert:
    """``INSERT`` that replaces (``update``) or skips a row whose primary key exists."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    keys = [column.name for column in table.primary_key.columns]
    if not update:
        return insert.on_conflict_do_nothing(index_elements=keys)
    others = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
    return insert.on_conflict_do_update(index_elements=keys, set_=others)


def _state_row(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "rule": alert.rule,
        "labels": dict(alert.labels),
        "state": alert.state.value,
        "value": _number(alert.value),
        "active_at": alert.active_at,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "last_sent_at": alert.last_sent_at,
        "keep_firing_since": alert.keep_firing_since,
        "annotations": dict(alert.annotations),
    }


def _alert(row: Any) -> Alert:
    return Alert(
        rule=row.rule,
        labels=labels_of(row.labels),
        state=AlertState(row.state),
        value=math.nan if row.value is None else row.value,
        active_at=row.active_at,
        fired_at=row.fired_at,
        resolved_at=row.resolved_at,
        last_sent_at=row.last_sent_at,
        keep_firing_since=row.keep_firing_since,
        annotations=tuple(sorted(row.annotations.items())),
    )


def _history_row(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "fingerprint": entry.fingerprint,
        "rule": entry.rule,
        "labels": entry.labels,
        "state": entry.state.value,
        "value": entry.value,
        "at": entry.at,
        "annotations": entry.annotations,
    }


def _delivery_row(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "receiver": delivery.receiver,
        "dedup_key": delivery.dedup_key,
        "status": delivery.status,
        "payload": delivery.payload,
        "created_at": delivery.created_at,
        "attempts": delivery.attempts,
        "next_attempt_at": None if delivery.finished else delivery.next_attempt_at,
        "delivered_at": delivery.delivered_at,
        "abandoned_at": delivery.abandoned_at,
        "last_error": delivery.last_error,
    }


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        receiver=row.receiver,
        dedup_key=row.dedup_key,
        status=row.status,
        payload=dict(row.payload),
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        abandoned_at=row.abandoned_at,
        last_error=row.last_error,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # Short: a locked store is a store that is down for this write, tried again next second.
    cursor.execute("PRAGMA busy_timeout=1000")
    cursor.close()


def create_store_engine(url: str, *, timeout: float) -> AsyncEngine:
    """The store's own engine: never the service's, so none of its statements reach the
    service's ``db_client_*`` metrics, and its pool is never the one the service exhausts."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, hide_parameters=True, poolclass=NullPool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args={
            "timeout": timeout,
            "command_timeout": timeout,
            # An engine paused inside a transaction (SIGSTOP, a frozen VM) would hold the lease
            # row's lock for as long as it stays paused, and no standby could take over: the
            # server ends such a session, and its locks, once it has idled that long.
            "server_settings": {
                "idle_in_transaction_session_timeout": str(max(1, round(timeout * 1000)))
            },
        },
    )


class Store:
    """Reads and writes the alert tables through the store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self) -> Snapshot:
        """Every stored active alert, and every delivery not yet finished, oldest first."""
        async with self.engine.connect() as connection:
            found: dict[str, list[Alert]] = {}
            for row in await connection.execute(select(states)):
                found.setdefault(row.rule, []).append(_alert(row))
            pending = await connection.execute(
                select(outbox).where(outbox.c.next_attempt_at.is_not(None)).order_by(outbox.c.id)
            )
            deliveries = tuple(_delivery(row) for row in pending)
        return Snapshot(
            alerts={rule: tuple(alerts) for rule, alerts in found.items()}, deliveries=deliveries
        )

    async def write(self, changes: Changes, *, fence: Fence | None = None) -> None:
        """Apply ``changes`` in one transaction; with a ``fence``, only while its lease token
        is current (``LeaseLost`` otherwise, and nothing is written)."""
        dialect = self.engine.dialect.name
        rows = [_state_row(a) for alerts in changes.states.values() for a in alerts]
        async with self.engine.begin() as connection:
            if fence is not None:
                await check_fence(connection, fence)
            if changes.states:
                await connection.execute(delete(states).where(states.c.rule.in_(changes.states)))
            if rows:
                await connection.execute(upsert(dialect, states, update=True), rows)
            if changes.history:
                await connection.execute(
                    upsert(dialect, history, update=False),
                    [_history_row(entry) for entry in changes.history],
                )
            if changes.deliveries:
                await connection.execute(
                    upsert(dialect, outbox, update=True),
                    [_delivery_row(d) for d in changes.deliveries.values()],
                )

    async def active(self) -> list[Alert]:
        """Every pending and firing alert, oldest first."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(states).order_by(states.c.active_at, states.c.fingerprint)
            )
            return [_alert(row) for row in rows]

    async def history(self, *, limit: int = 100) -> list[HistoryEntry]:
        """The latest transitions, newest first."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(history).order_by(history.c.id.desc()).limit(limit)
            )
            return [
                HistoryEntry(
                    id=row.id,
                    rule=row.rule,
                    fingerprint=row.fingerprint,
                    labels=dict(row.labels),
                    state=AlertState(row.state),
                    value=row.value,
                    at=row.at,
                    annotations=dict(row.annotations),
                )
                for row in rows
            ]

    async def deliveries(self, *, receiver: str | None = None) -> list[Delivery]:
        """Every outbox row (finished or not), oldest first."""
        query = select(outbox).order_by(outbox.c.id)
        if receiver is not None:
            query = query.where(outbox.c.receiver == receiver)
        async with self.engine.connect() as connection:
            return [_delivery(row) for row in await connection.execute(query)]

    async def prune(self, *, before: datetime) -> int:
        """Delete outbox rows finished before ``before``; return how many."""
        finished = func.coalesce(outbox.c.delivered_at, outbox.c.abandoned_at)
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(outbox).where(and_(outbox.c.next_attempt_at.is_(None), finished < before))
            )
            return int(result.rowcount)
