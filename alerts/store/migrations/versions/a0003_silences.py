"""Silences (matchers, start, end, author, comment), acknowledgements of one alert, and
recurring maintenance windows.

Revision ID: a0003
Revises: a0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0003"
down_revision: str | None = "a0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dynoscope_alert_silences",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("comment", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=True),
        sa.Column("episode", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recurrence", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dynoscope_alert_silences"),
    )
    op.create_index("ix_dynoscope_alert_silences_ends_at", "dynoscope_alert_silences", ["ends_at"])


def downgrade() -> None:
    op.drop_table("dynoscope_alert_silences")
