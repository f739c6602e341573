"""The alert engine's own tables, on metadata of its own (never the service's).

They live in the engine's store (``ALERT_STORE_URL``): state of pending and firing alerts,
the history of transitions, the notification outbox, the leader's lease, and silences.
Migrations are in ``alerts/store/migrations`` with a version table of their own, so the store may
share a database with the service without either touching the other's schema.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from dbkit.types import UTCDateTime

metadata = MetaData(naming_convention={"ix": "ix_%(column_0_label)s", "pk": "pk_%(table_name)s"})


states = Table(
    "dynoscope_alert_states",
    metadata,
    Column("fingerprint", String(16), primary_key=True),
    Column("rule", String(200), nullable=False, index=True),
    Column("labels", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("active_at", UTCDateTime(), nullable=False),
    Column("fired_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("last_sent_at", UTCDateTime(), nullable=True),
    Column("keep_firing_since", UTCDateTime(), nullable=True),
    Column("annotations", JSON, nullable=False),
)

history = Table(
    "dynoscope_alert_history",
    metadata,
    # Made by the engine, not the database: a write retried after an unclear failure
    # (a timeout during commit) must not record a transition twice.
    Column("id", String(32), primary_key=True),
    Column("fingerprint", String(16), nullable=False, index=True),
    Column("rule", String(200), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("at", UTCDateTime(), nullable=False, index=True),
    Column("annotations", JSON, nullable=False),
)

outbox = Table(
    "dynoscope_alert_outbox",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("receiver", String(100), nullable=False),
    Column("dedup_key", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("abandoned_at", UTCDateTime(), nullable=True),
    Column("last_error", String(300), nullable=True),
    Index("ix_dynoscope_alert_outbox_due", "next_attempt_at"),
)

lease = Table(
    "dynoscope_alert_lease",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    # Grows by one at every change of leader: the fencing token every store write checks.
    Column("token", BigInteger, nullable=False),
    # Seconds since the epoch by the database's clock, never a host's: hosts may disagree.
    Column("expires_at", Float, nullable=False),
)

silences = Table(
    "dynoscope_alert_silences",
    metadata,
    Column("id", String(32), primary_key=True),
    # [[label, "=" or "=~", value], ...]
    Column("matchers", JSON, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False, index=True),
    Column("author", String(200), nullable=False),
    Column("comment", String(1000), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # An acknowledgement: one alert (by fingerprint) for one episode (its active_at) only.
    Column("fingerprint", String(16), nullable=True),
    Column("episode", UTCDateTime(), nullable=True),
    # A maintenance window: {"days": "sun", "at": "02:00", "length": "1h"} (UTC).
    Column("recurrence", JSON, nullable=True),
)
