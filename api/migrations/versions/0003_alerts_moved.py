"""Alert tables leave the service's database for the alert engine's own store.

``dynoscope db upgrade`` first copies them into the store (``alerts.store.migrate.import_legacy``),
which drops them here. This revision drops only empty ones, so an upgrade run in another
order never loses alert history: tables that still hold rows wait for that copy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("alert_outbox", "alert_history", "alert_states")


def upgrade() -> None:
    connection = op.get_bind()
    existing = set(sa.inspect(connection).get_table_names())
    for name in TABLES:
        if name not in existing:
            continue
        table = sa.table(name)
        rows = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        if rows == 0:
            op.drop_table(name)


def downgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if set(TABLES) & existing:
        return
    path = Path(__file__).with_name("0002_alerts.py")
    spec = importlib.util.spec_from_file_location("dynoscope_migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.upgrade()
