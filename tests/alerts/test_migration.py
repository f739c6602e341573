"""Migration 0002 creates exactly the tables ``alerts.store`` declares, and rolls back."""

from __future__ import annotations

import warnings
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine

import alerts.store  # noqa: F401  (declares the alert tables on the shared metadata)
from api.migrate import alembic_config
from api.models import Base

TABLES = {"alert_states", "alert_history", "alert_outbox"}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    with warnings.catch_warnings():
        # SQLite cannot reflect the API's expression index; not an alert table anyway.
        warnings.simplefilter("ignore", SAWarning)
        warnings.simplefilter("ignore", UserWarning)
        diffs = compare_metadata(context, Base.metadata)
    return [d for d in diffs if TABLES & {str(part) for part in _names(d)}]


def _names(diff: Any) -> list[str]:
    # Each difference is a tuple (or list of tuples) naming the table somewhere inside.
    items = diff if isinstance(diff, list) else [diff]
    found = []
    for item in items:
        for part in item:
            name = getattr(part, "name", None) or getattr(
                getattr(part, "table", None), "name", None
            )
            if name:
                found.append(name)
            if isinstance(part, str):
                found.append(part)
    return found


async def test_tables_match_the_store_declaration(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


def _downgrade(connection: Connection, revision: str) -> set[str]:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)
    after = set(inspect(connection).get_table_names())
    command.upgrade(config, "head")
    return after


async def test_downgrade_removes_only_the_alert_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        remaining = await connection.run_sync(_downgrade, "0001")
        assert not TABLES & remaining and "properties" in remaining
        assert set(await connection.run_sync(lambda c: inspect(c).get_table_names())) >= TABLES
