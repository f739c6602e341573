"""Apply the alert store's migrations, and move alert history out of the service's database.

The store has its own Alembic scripts and version table (``dynoscope_alerts_version``), so it
may live in any database, the service's included, without either schema touching the other.

Releases before the separate store kept ``alert_states``, ``alert_history`` and
``alert_outbox`` in the service's database. ``import_legacy`` copies them into the store
(idempotently: ids are derived from the old rows) and then drops them, so an existing
deployment keeps its alert history; ``dynoscope db upgrade`` runs it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from alembic.config import Config
from sqlalchemy import Connection, MetaData, Table, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.store import schema
from alerts.store.store import upsert
from dbkit import migrations
from dbkit.types import UTCDateTime

MIGRATIONS = Path(__file__).parent / "migrations"
LEGACY_TABLES = ("alert_states", "alert_history", "alert_outbox")
# An arbitrary constant naming the store's migration lock (PostgreSQL advisory locks are ints).
MIGRATION_LOCK = 0x64796E6F


def alembic_config() -> Config:
    return migrations.alembic_config(MIGRATIONS)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the alert store up to ``revision``; safe on an up-to-date store, and on
    PostgreSQL safe when several engines start at once (they migrate one after another)."""
    await migrations.upgrade(engine, MIGRATIONS, revision, lock=MIGRATION_LOCK)


def _legacy_id(at: datetime, old_id: int) -> str:
    # Sorts with ids made by alerts.delivery.notification.new_id: creation time first.
    return f"{int(at.timestamp() * 1e9):020d}{old_id % 1_000_000:06d}"


def _read_legacy(connection: Connection) -> dict[str, list[dict[str, Any]]] | None:
    names = set(inspect(connection).get_table_names())
    if not set(LEGACY_TABLES) <= names:
        return None
    legacy = MetaData()
    tables = {name: Table(name, legacy, autoload_with=connection) for name in LEGACY_TABLES}
    return {
        name: [dict(row._mapping) for row in connection.execute(select(table))]
        for name, table in tables.items()
    }


def _aware(value: Any) -> Any:
    return UTCDateTime().process_result_value(value, None)


def _converted(rows: dict[str, list[dict[str, Any]]]) -> dict[Table, list[dict[str, Any]]]:
    def times(row: dict[str, Any]) -> dict[str, Any]:
        return {k: _aware(v) if isinstance(v, datetime) else v for k, v in row.items()}

    states = [times(row) for row in rows["alert_states"]]
    history = []
    for row in map(times, rows["alert_history"]):
        history.append({**row, "id": _legacy_id(row["at"], row["id"])})
    outbox = []
    for row in map(times, rows["alert_outbox"]):
        outbox.append({**row, "id": _legacy_id(row["created_at"], row["id"])})
    return {schema.states: states, schema.history: history, schema.outbox: outbox}


def _drop_legacy(connection: Connection) -> None:
    names = set(inspect(connection).get_table_names())
    legacy = MetaData()
    for name in reversed(LEGACY_TABLES):
        if name in names:
            Table(name, legacy, autoload_with=connection).drop(connection)


async def import_legacy(*, service: AsyncEngine, store: AsyncEngine) -> int:
    """Copy alert tables left in the service's database into the store, then drop them there.

    Returns how many rows were copied (0 when there was nothing to move). The store must be
    migrated. Safe to repeat: a row copied before is not copied twice.
    """
    async with service.connect() as connection:
        rows = await connection.run_sync(_read_legacy)
    if rows is None:
        return 0
    converted = _converted(rows)
    async with store.begin() as connection:
        for table, values in converted.items():
            if values:
                await connection.execute(
                    upsert(connection.dialect.name, table, update=False), values
                )
    async with service.begin() as connection:
        await connection.run_sync(_drop_legacy)
    return sum(len(values) for values in converted.values())
