"""Silences: matchers over labels with a start, an end, an author and a comment.

A silenced alert still changes state and is recorded in the history; only its notifications
are held back (``Outbox.notify`` asks ``Silences.muting``). An acknowledgement
(``Silence.acknowledge``) mutes the reminders of one firing alert until it resolves; its
resolution is still announced. Both live in the store, so one made through any API instance
or ``dynoscope silence add`` reaches the leader: it reads them every few seconds into memory
(``Silences.refresh``), and a store that is down leaves the last known set in force.

    >>> t0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    >>> quiet = Silence.new(["alertname=\\"CacheHitRateLow\\""], starts_at=t0,
    ...                     ends_at=t0 + timedelta(hours=1), author="ana", comment="deploy")
    >>> quiet.mutes({"alertname": "CacheHitRateLow"}, now=t0 + timedelta(minutes=5))
    True
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.engine.state import Alert
from alerts.silences.matchers import Matcher, parse_matcher
from alerts.silences.recurrence import Recurrence

log = logging.getLogger("dynoscope.alerts")

# Long enough for any episode; bounded so the table does not keep acknowledgements for ever.
ACK_KEEP = timedelta(days=30)


@dataclass(frozen=True)
class Silence:
    """Hold back notifications of alerts matching every matcher, from ``starts_at`` until
    ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    created_at: datetime
    fingerprint: str | None = None
    """Set on an acknowledgement: it mutes reminders of this alert only..."""
    episode: datetime | None = None
    """...while it stays in the episode that began at this ``active_at``."""
    recurrence: Recurrence | None = None
    """A maintenance window: in force only inside these weekly windows (between start and end)."""

    @classmethod
    def acknowledge(
        cls, alert: Alert, *, now: datetime, author: str, comment: str, keep: timedelta = ACK_KEEP
    ) -> Silence:
        """Mute reminders of one firing ``alert`` until it resolves (a later episode of the
        same alert is not muted)."""
        return cls(
            id=secrets.token_hex(8),
            matchers=tuple(Matcher(name, value) for name, value in alert.labels),
            starts_at=now,
            ends_at=now + keep,
            author=author,
            comment=comment,
            created_at=now,
            fingerprint=alert.fingerprint,
            episode=alert.active_at,
        )

    def acknowledges(self, alert: Alert, *, now: datetime) -> bool:
        return (
            self.fingerprint == alert.fingerprint
            and self.episode == alert.active_at
            and self.active(now)
        )

    @classmethod
    def new(
        cls,
        matchers: Sequence[str],
        *,
        starts_at: datetime,
        ends_at: datetime,
        author: str,
        comment: str,
        created_at: datetime | None = None,
        recurrence: Recurrence | None = None,
    ) -> Silence:
        """Validate and make one; ``ValueError`` names the bad matcher or the bad times."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        parsed = tuple(parse_matcher(text) for text in matchers)
        if ends_at <= starts_at:
            raise ValueError("ends_at must be after starts_at")
        return cls(
            id=secrets.token_hex(8),
            matchers=parsed,
            starts_at=starts_at,
            ends_at=ends_at,
            author=author,
            comment=comment,
            created_at=created_at or starts_at,
            recurrence=recurrence,
        )

    def active(self, now: datetime) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        return self.recurrence is None or self.recurrence.covers(now)

    def mutes(self, labels: Mapping[str, str], *, now: datetime) -> bool:
        if self.fingerprint is not None:
            return False  # an acknowledgement mutes reminders only (``acknowledges``)
        return self.active(now) and all(m.matches(labels) for m in self.matchers)


Load = Callable[[datetime], Awaitable[list[Silence]]]


class Silences:
    """The silences the engine knows, refreshed from the store."""

    def __init__(self, load: Load | None = None, *, timeout: float = 2.0) -> None:
        self._load = load
        self._timeout = timeout
        self._known: dict[str, Silence] = {}

    def replace(self, silences: Iterable[Silence]) -> None:
        self._known = {s.id: s for s in silences}

    def add(self, silence: Silence) -> None:
        self._known[silence.id] = silence

    def acknowledged(self, alert: Alert, *, now: datetime) -> bool:
        """Whether reminders of ``alert`` are muted by an acknowledgement."""
        return any(s.acknowledges(alert, now=now) for s in self._known.values())

    def muting(self, labels: Mapping[str, str], *, now: datetime) -> Silence | None:
        """The silence holding back an alert with ``labels`` at ``now``, if any."""
        return next((s for s in self._known.values() if s.mutes(labels, now=now)), None)

    async def refresh(self, *, now: datetime) -> bool:
        """Read the store's silences (bounded by the timeout); keep the old set on failure."""
        if self._load is None:
            return True
        try:
            async with asyncio.timeout(self._timeout):
                self.replace(await self._load(now))
        except Exception as exc:
            log.debug("silences not refreshed: %s", type(exc).__name__)
            return False
        return True


def utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
