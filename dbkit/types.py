"""Column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the offset).

    >>> from datetime import timedelta, timezone
    >>> column = UTCDateTime()
    >>> column.process_result_value(datetime(2026, 12, 7, 9), None)  # as SQLite returns it
    datetime.datetime(2026, 12, 7, 9, 0, tzinfo=datetime.timezone.utc)
    >>> paris = timezone(timedelta(hours=1))
    >>> column.process_bind_param(datetime(2026, 12, 7, 10, tzinfo=paris), None)
    datetime.datetime(2026, 12, 7, 9, 0, tzinfo=datetime.timezone.utc)
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect | None
    ) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; store UTC-aware timestamps")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(
        self, value: datetime | None, dialect: Dialect | None
    ) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
