"""Apply the service's Alembic migrations (``api/migrations``) on the async engine."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from dbkit import migrations

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    return migrations.alembic_config(MIGRATIONS)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database up to `revision`; safe to call on an up-to-date database."""
    await migrations.upgrade(engine, MIGRATIONS, revision)
