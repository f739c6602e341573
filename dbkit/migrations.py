"""Run a schema's Alembic migrations on an async engine (PostgreSQL and SQLite alike).

Each schema keeps its own scripts folder and its own version table, so two schemas may share
one database without either touching the other. The scripts' ``env.py`` calls
``run_migrations`` with the connection ``upgrade`` handed in.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(scripts: Path) -> Config:
    """An Alembic configuration for the migrations in ``scripts``, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(scripts))
    return config


async def upgrade(
    engine: AsyncEngine, scripts: Path, revision: str = "head", *, lock: int | None = None
) -> None:
    """Bring the database up to ``revision``; safe on an up-to-date database. With ``lock``
    (a PostgreSQL advisory lock key), processes starting at once migrate one after another."""

    def run(connection: Connection) -> None:
        config = alembic_config(scripts)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        if lock is not None and connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({int(lock)})"))
        await connection.run_sync(run)


def run_migrations(metadata: MetaData, *, version_table: str = "alembic_version") -> None:
    """The body of a scripts folder's ``env.py``: migrate on the connection ``upgrade``
    passed (batch mode on SQLite, which cannot alter a table in place)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through `dynoscope db upgrade`, which passes a connection"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
