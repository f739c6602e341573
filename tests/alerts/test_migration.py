"""The alert store's own migrations, and the move of alert history out of the service's
database that ``dynoscope db upgrade`` makes for deployments from before the separate store."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.engine.state import AlertState
from alerts.store import schema
from alerts.store.migrate import LEGACY_TABLES, alembic_config
from alerts.store.store import Store
from api.db import create_engine
from api.migrate import alembic_config as service_config
from api.migrate import upgrade as upgrade_service
from api.settings import Settings
from dynoscope.cli import _upgrade
from tests.alerts.conftest import migrated_store

STORE_TABLES = {table.name for table in schema.metadata.sorted_tables}
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "version_table": "dynoscope_alerts_version"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        warnings.simplefilter("ignore", UserWarning)
        diffs = compare_metadata(context, schema.metadata)
    # The store may share a database with the service: only its own tables count.
    return [d for d in diffs if STORE_TABLES & set(map(str, _names(d)))]


def _names(diff: Any) -> list[str]:
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


async def test_store_tables_match_the_schema(store_engine: AsyncEngine) -> None:
    async with store_engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


def _downgrade(connection: Connection) -> set[str]:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")
    after = set(inspect(connection).get_table_names())
    command.upgrade(config, "head")
    return after


async def test_downgrade_removes_only_the_store_tables(store_engine: AsyncEngine) -> None:
    async with store_engine.begin() as connection:
        remaining = await connection.run_sync(_downgrade)
        assert not STORE_TABLES & remaining
        assert set(await connection.run_sync(lambda c: inspect(c).get_table_names())) >= (
            STORE_TABLES
        )


LEGACY_ROWS = [
    "INSERT INTO alert_states (fingerprint, rule, labels, state, value, active_at, fired_at,"
    " last_sent_at, annotations) VALUES ('aaaaaaaaaaaaaaaa', 'ApiLatencyP95High',"
    " :labels, 'firing', 0.9, :t0, :t0, :t0, '{}')",
    "INSERT INTO alert_history (fingerprint, rule, labels, state, value, at, annotations)"
    " VALUES ('aaaaaaaaaaaaaaaa', 'ApiLatencyP95High', :labels, 'pending', 0.9, :t0, '{}')",
    "INSERT INTO alert_history (fingerprint, rule, labels, state, value, at, annotations)"
    " VALUES ('aaaaaaaaaaaaaaaa', 'ApiLatencyP95High', :labels, 'firing', 0.9, :t0, '{}')",
    "INSERT INTO alert_outbox (receiver, dedup_key, status, payload, created_at, attempts,"
    " next_attempt_at) VALUES ('webhook', 'aaaaaaaaaaaaaaaa', 'firing', '{}', :t0, 3, :t0)",
]


def _service_at(connection: Connection, revision: str) -> None:
    config = service_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)  # from an empty database
    command.downgrade(config, revision)  # from one a test before left at head


async def _legacy_deployment(engine: AsyncEngine) -> None:
    """A service database as the release before the separate store left it."""
    async with engine.begin() as connection:
        await connection.run_sync(_service_at, "0002")
    labels = json.dumps({"alertname": "ApiLatencyP95High", "route": "/properties"})
    async with engine.begin() as connection:
        for statement in LEGACY_ROWS:
            await connection.execute(text(statement), {"labels": labels, "t0": T0})


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_db_upgrade_moves_legacy_alert_history_into_the_store(
    store_environ: dict[str, str],
) -> None:
    settings = Settings.from_env(store_environ)
    service = create_engine(settings)
    try:
        await _legacy_deployment(service)
        await upgrade_service(service)  # the service alone first: non-empty tables stay
        assert set(LEGACY_TABLES) <= await _tables(service)

        assert await _upgrade(settings) == 4
        assert not set(LEGACY_TABLES) & await _tables(service)
        assert await _upgrade(settings) == 0  # nothing left to move
    finally:
        await service.dispose()
    async with migrated_store(store_environ) as engine:
        store = Store(engine)
        (alert,) = await store.active()
        assert (alert.rule, alert.state, alert.fired_at) == (
            "ApiLatencyP95High",
            AlertState.FIRING,
            T0,
        )
        history = await store.history()
        assert [h.state.value for h in history] == ["firing", "pending"]
        (delivery,) = await store.deliveries()
        assert (delivery.attempts, delivery.next_attempt_at) == (3, T0)


async def test_a_fresh_service_database_has_no_alert_tables(environ: dict[str, str]) -> None:
    settings = Settings.from_env(environ)
    service = create_engine(settings)
    try:
        await upgrade_service(service)
        assert not set(LEGACY_TABLES) & await _tables(service)
    finally:
        await service.dispose()
