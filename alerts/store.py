"""Alert state, history and the notification outbox, in the service's database.

State and the outbox rows an evaluation produces are written in one transaction, so a crash
either keeps both or neither: after a restart pending and firing alerts continue with their
timers (``active_at``, ``fired_at``) and a notification already queued is neither lost nor
queued again. Delivery is at-least-once: a row is marked delivered only after the receiver
accepted it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.query import labels_of
from alerts.state import Alert, AlertState, Evaluation, Notification
from api.models import Base, UTCDateTime

alert_states = Table(
    "alert_states",
    Base.metadata,
    Column("fingerprint", String(16), primary_key=True),
    Column("rule", String(200), nullable=False, index=True),
    Column("labels", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("active_at", UTCDateTime(), nullable=False),
    Column("fired_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("last_sent_at", UTCDateTime(), nullable=True),
    Column("keep_firing_since", UTCDateTime(), nullable=True),
    Column("annotations", JSON, nullable=False),
)

alert_history = Table(
    "alert_history",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(16), nullable=False, index=True),
    Column("rule", String(200), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("at", UTCDateTime(), nullable=False, index=True),
    Column("annotations", JSON, nullable=False),
)

alert_outbox = Table(
    "alert_outbox",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receiver", String(100), nullable=False),
    Column("dedup_key", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("abandoned_at", UTCDateTime(), nullable=True),
    Column("last_error", String(300), nullable=True),
    Index("ix_alert_outbox_due", "next_attempt_at"),
    # Delivery in order per receiver and alert looks for an earlier undelivered row.
    Index("ix_alert_outbox_key", "receiver", "dedup_key", "id"),
)


@dataclass(frozen=True)
class HistoryEntry:
    """One transition of one alert."""

    id: int
    rule: str
    fingerprint: str
    labels: dict[str, str]
    state: AlertState
    value: float | None
    at: datetime
    annotations: dict[str, str]


@dataclass(frozen=True)
class Delivery:
    """A queued notification for one receiver (``payload`` is ``notification_payload``)."""

    id: int
    receiver: str
    dedup_key: str
    status: str
    payload: dict[str, Any]
    attempts: int


def _number(value: float) -> float | None:
    # SQLite stores NaN as NULL anyway; do the same everywhere so both read back alike.
    return None if math.isnan(value) else value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def notification_payload(notification: Notification) -> dict[str, Any]:
    """What receivers need about one alert, in Alertmanager's field names."""
    alert = notification.alert
    return {
        "status": notification.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": _iso(alert.fired_at or alert.active_at),
        "endsAt": _iso(alert.resolved_at),
        "fingerprint": alert.fingerprint,
        "value": _number(alert.value),
    }


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


class Store:
    """Reads and writes alert tables through the service's async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self, rules: Collection[str]) -> dict[str, tuple[Alert, ...]]:
        """Pending and firing alerts of ``rules``, by rule name."""
        found: dict[str, list[Alert]] = {name: [] for name in rules}
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(alert_states).where(alert_states.c.rule.in_(list(rules)))
            )
            for row in rows:
                found.setdefault(row.rule, []).append(_alert(row))
        return {name: tuple(alerts) for name, alerts in found.items()}

    async def save(
        self, evaluations: Mapping[str, Evaluation], *, receivers: Sequence[str], now: datetime
    ) -> None:
        """Replace the rules' active alerts, append history, queue notifications: atomically."""
        changed = {name: e for name, e in evaluations.items() if not e.failed}
        states = [_state_row(a) for e in changed.values() for a in e.alerts]
        history = [{**_state_row(a), "at": now} for e in changed.values() for a in e.changes]
        outbox = [
            {
                "receiver": receiver,
                "dedup_key": n.dedup_key,
                "status": n.status,
                "payload": notification_payload(n),
                "created_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for e in changed.values()
            for n in e.notifications
            for receiver in receivers
        ]
        async with self._engine.begin() as connection:
            if changed:
                await connection.execute(
                    delete(alert_states).where(alert_states.c.rule.in_(list(changed)))
                )
            if states:
                await connection.execute(insert(alert_states), states)
            if history:
                columns = {c.name for c in alert_history.columns}
                rows = [{k: v for k, v in row.items() if k in columns} for row in history]
                await connection.execute(insert(alert_history), rows)
            if outbox:
                await connection.execute(insert(alert_outbox), outbox)

    async def active(self) -> list[Alert]:
        """Every pending and firing alert, oldest first."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(alert_states).order_by(alert_states.c.active_at, alert_states.c.fingerprint)
            )
            return [_alert(row) for row in rows]

    async def history(self, *, limit: int = 100) -> list[HistoryEntry]:
        """The latest transitions, newest first."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(alert_history).order_by(alert_history.c.id.desc()).limit(limit)
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

    async def due(self, *, now: datetime, limit: int = 100) -> list[Delivery]:
        """Undelivered notifications whose next attempt is due, oldest first.

        Per receiver and dedup key only the oldest undelivered row is eligible: a later row
        (say "resolved") waits until the one before it ("firing", perhaps backing off) is
        delivered or abandoned, so a receiver never ends up showing a stale state.
        """
        earlier = alert_outbox.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                and_(
                    earlier.c.receiver == alert_outbox.c.receiver,
                    earlier.c.dedup_key == alert_outbox.c.dedup_key,
                    earlier.c.next_attempt_at.is_not(None),
                    earlier.c.id < alert_outbox.c.id,
                )
            )
            .exists()
        )
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(alert_outbox)
                .where(
                    and_(
                        alert_outbox.c.next_attempt_at.is_not(None),
                        alert_outbox.c.next_attempt_at <= now,
                        ~blocked,
                    )
                )
                .order_by(alert_outbox.c.id)
                .limit(limit)
            )
            return [
                Delivery(
                    id=row.id,
                    receiver=row.receiver,
                    dedup_key=row.dedup_key,
                    status=row.status,
                    payload=dict(row.payload),
                    attempts=row.attempts,
                )
                for row in rows
            ]

    async def pending_deliveries(self) -> int:
        async with self._engine.connect() as connection:
            count = await connection.execute(
                select(func.count()).where(alert_outbox.c.next_attempt_at.is_not(None))
            )
            return int(count.scalar_one())

    async def prune(self, *, before: datetime) -> int:
        """Delete delivered and abandoned rows finished before ``before``; return how many."""
        finished = func.coalesce(alert_outbox.c.delivered_at, alert_outbox.c.abandoned_at)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                delete(alert_outbox).where(
                    and_(alert_outbox.c.next_attempt_at.is_(None), finished < before)
                )
            )
            return int(result.rowcount)

    async def delivered(self, delivery: Delivery, *, at: datetime) -> None:
        await self._finish(delivery, attempts=delivery.attempts + 1, delivered_at=at)

    async def retry(
        self, delivery: Delivery, *, at: datetime, after: timedelta, error: str
    ) -> None:
        await self._finish(
            delivery,
            attempts=delivery.attempts + 1,
            next_attempt_at=at + after,
            last_error=error[:300],
        )

    async def abandon(self, delivery: Delivery, *, at: datetime, error: str) -> None:
        await self._finish(
            delivery, attempts=delivery.attempts + 1, abandoned_at=at, last_error=error[:300]
        )

    async def _finish(self, delivery: Delivery, **values: Any) -> None:
        values.setdefault("next_attempt_at", None)
        async with self._engine.begin() as connection:
            await connection.execute(
                update(alert_outbox).where(alert_outbox.c.id == delivery.id).values(**values)
            )
