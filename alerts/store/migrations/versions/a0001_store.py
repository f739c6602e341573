"""The alert store: state, history and outbox of the alert engine.

Revision ID: a0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dynoscope_alert_states",
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("active_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("keep_firing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_dynoscope_alert_states"),
    )
    op.create_index(
        "ix_dynoscope_alert_states_rule", "dynoscope_alert_states", ["rule"], unique=False
    )
    op.create_table(
        "dynoscope_alert_history",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dynoscope_alert_history"),
    )
    op.create_index(
        "ix_dynoscope_alert_history_fingerprint", "dynoscope_alert_history", ["fingerprint"]
    )
    op.create_index("ix_dynoscope_alert_history_at", "dynoscope_alert_history", ["at"])
    op.create_table(
        "dynoscope_alert_outbox",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("receiver", sa.String(100), nullable=False),
        sa.Column("dedup_key", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dynoscope_alert_outbox"),
    )
    op.create_index("ix_dynoscope_alert_outbox_due", "dynoscope_alert_outbox", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("dynoscope_alert_outbox")
    op.drop_table("dynoscope_alert_history")
    op.drop_table("dynoscope_alert_states")
