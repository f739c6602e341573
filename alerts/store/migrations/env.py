"""Alembic environment of the alert store: runs on a connection handed in by
``alerts.store.migrate``."""

from __future__ import annotations

from alembic import context

from alerts.store.schema import metadata

VERSION_TABLE = "dynoscope_alerts_version"

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `dynoscope db upgrade`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
