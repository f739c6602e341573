"""The shared column type keeps timestamps aware and in UTC on every backend, and the
migration runner brings both schemas up in one database without either seeing the other's."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

import dbkit.types
from alerts.store.migrate import upgrade as upgrade_store
from api.migrate import upgrade as upgrade_service
from dbkit.types import UTCDateTime


def test_docstring_examples() -> None:
    result = doctest.testmod(dbkit.types, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_a_naive_timestamp_is_refused_and_an_aware_one_stored_in_utc() -> None:
    column = UTCDateTime()
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2026, 12, 7, 9), None)
    east = datetime(2026, 12, 7, 9, tzinfo=timezone(timedelta(hours=5)))
    assert column.process_bind_param(east, None) == datetime(2026, 12, 7, 4, tzinfo=UTC)
    assert column.process_result_value(None, None) is None


async def test_both_schemas_migrate_into_one_database_each_with_its_version_table(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    try:
        for _ in range(2):  # the second time finds nothing to do
            await upgrade_service(engine)
            await upgrade_store(engine)
        async with engine.connect() as connection:
            tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
            versions = [
                (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
                for table in ("alembic_version", "dynoscope_alerts_version")
            ]
    finally:
        await engine.dispose()
    assert {"properties", "users", "dynoscope_alert_states", "dynoscope_alert_history"} <= tables
    assert versions == [1, 1]
