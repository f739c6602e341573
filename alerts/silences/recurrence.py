"""Recurring maintenance windows: on given weekdays, from a UTC time of day, for a while.

    >>> sunday_night = Recurrence.parse(days="sun", at="02:00", length="1h")
    >>> sunday_night.covers(datetime(2026, 11, 29, 2, 30, tzinfo=UTC))   # a Sunday
    True
    >>> sunday_night.covers(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    False

A window may run past midnight (``sat`` at ``23:00`` for ``2h`` covers Sunday 00:30).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from alerts.rules.duration import format_duration, parse_duration

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Recurrence:
    """Weekdays (0 = Monday), a start time of day (UTC) and a length under a day."""

    weekdays: frozenset[int]
    start: time
    length: timedelta

    @classmethod
    def parse(cls, *, days: str, at: str, length: str) -> Recurrence:
        """``days`` like ``sun`` or ``mon,tue`` or ``daily``; ``at`` ``HH:MM``; ``length`` a
        duration (``1h``); ``ValueError`` naming what is wrong."""
        names = DAYS if days.strip().lower() == "daily" else days.lower().split(",")
        unknown = [d for d in names if d.strip() not in DAYS]
        if unknown or not names:
            raise ValueError(f"days {days!r}: use daily or names among {', '.join(DAYS)}")
        try:
            start = time.fromisoformat(at)
        except ValueError:
            raise ValueError(f"at {at!r}: use HH:MM (UTC)") from None
        span = parse_duration(length)
        if not timedelta(0) < span <= timedelta(days=1):
            raise ValueError(f"length {length!r}: must be more than 0 and at most 24h")
        return cls(frozenset(DAYS.index(d.strip()) for d in names), start, span)

    def covers(self, now: datetime) -> bool:
        """Whether ``now`` falls in one of the windows (one starting today or yesterday)."""
        now = now.astimezone(UTC)
        for back in (0, 1):
            day = now.date() - timedelta(days=back)
            if day.weekday() in self.weekdays:
                begin = datetime.combine(day, self.start, tzinfo=UTC)
                if begin <= now < begin + self.length:
                    return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "days": ",".join(DAYS[d] for d in sorted(self.weekdays)),
            "at": self.start.strftime("%H:%M"),
            "length": format_duration(self.length),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Recurrence:
        return cls.parse(days=value["days"], at=value["at"], length=value["length"])

    def __str__(self) -> str:
        spec = self.to_json()
        return f"every {spec['days']} at {spec['at']} UTC for {spec['length']}"
