"""Alembic environment of the alert store: runs on a connection handed in by
``alerts.store.migrate``."""

from __future__ import annotations

from alerts.store.schema import metadata
from dbkit.migrations import run_migrations

VERSION_TABLE = "dynoscope_alerts_version"

run_migrations(metadata, version_table=VERSION_TABLE)
