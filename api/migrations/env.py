"""Alembic environment of the service's schema: runs on a connection handed in by
``api.migrate``."""

from __future__ import annotations

from api.models import Base
from dbkit.migrations import run_migrations

run_migrations(Base.metadata)
