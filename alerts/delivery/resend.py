"""Announce still-firing alerts again: refreshes for receivers that forget, and reminders.

- **Refresh**: a receiver with a ``resend_every`` (Alertmanager) forgets an alert nobody
  pushes again before ``endsAt``; it gets every firing alert again each ``resend_every``.
- **Reminder**: a route's ``repeat_interval`` (``alerts.delivery.receivers``) announces an
  alert that is still firing again to its receivers, unless it is acknowledged or silenced.
  For a receiver that groups, the group reminds (``alerts.delivery.grouping``): this only
  makes sure every firing alert is in its groups, those adopted after a restart included.

Each run queues, per firing alert and receiver, one "firing" delivery when the last one is at
least that old and nothing for that alert is still queued there (a queued "resolved" is never
overtaken: the outbox keeps per-alert order). Only ``run`` reads ``now``: tests step a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.outbox import Outbox
from alerts.engine.ledger import Ledger
from alerts.engine.state import Alert, AlertState, Notification


class Resender:
    """Refreshes and reminders of firing alerts."""

    def __init__(
        self, *, ledger: Ledger, outbox: Outbox, notifiers: Mapping[str, Notifier]
    ) -> None:
        self._ledger = ledger
        self._outbox = outbox
        self._refresh: dict[str, timedelta] = {
            name: notifier.resend_every
            for name, notifier in notifiers.items()
            if notifier.resend_every is not None
        }
        self._pushed: dict[tuple[str, str, datetime], datetime] = {}

    @property
    def period(self) -> timedelta | None:
        """The shortest refresh interval, or ``None`` when no receiver needs refreshing."""
        return min(self._refresh.values(), default=None)

    def run(self, *, now: datetime) -> int:
        """Queue what is due; return how many deliveries were queued."""
        queued = 0
        self.forget_resolved()
        for alert in self._ledger.active():
            if alert.state is not AlertState.FIRING:
                continue
            self._outbox.track(alert, now=now)
            labels = dict(alert.labels)
            muted = self._outbox.muted(labels, now=now)
            remind = self._outbox.repeat_for(labels)
            if remind is not None and self._outbox.acknowledged(alert, now=now):
                remind = None
            for receiver in self._outbox.receivers_for(labels):
                own = None if self._outbox.groups(receiver) else remind
                every = min(
                    (e for e in (self._refresh.get(receiver), own) if e is not None),
                    default=None,
                )
                if every is None:
                    continue
                if muted:
                    # Timed from first sight all the same: when the silence ends, on-call hears
                    # of an alert that kept firing under it at the next reminder.
                    self._pushed.setdefault((receiver, alert.fingerprint, alert.active_at), now)
                    continue
                if self._due(alert, receiver, every, now=now):
                    # Through the outbox, so a reminder carries the links the first had.
                    notification = Notification(alert=alert, at=now)
                    self._outbox.enqueue([self._outbox.delivery(notification, receiver, now=now)])
                    queued += 1
        return queued

    def _due(self, alert: Alert, receiver: str, every: timedelta, *, now: datetime) -> bool:
        if self._outbox.queued((receiver, alert.fingerprint)):
            return False
        # Per episode, counted from when this engine first saw it firing (the notification
        # itself); an alert that resolved and fired again starts over.
        key = (receiver, alert.fingerprint, alert.active_at)
        last = self._pushed.setdefault(key, now)
        if now - last < every:
            return False
        self._pushed[key] = now
        return True

    def reset(self) -> None:
        self._pushed.clear()

    def forget_resolved(self) -> None:
        """Drop the timers of episodes that are over (bounded memory)."""
        live = {(a.fingerprint, a.active_at) for a in self._ledger.active()}
        for key in [k for k in self._pushed if (k[1], k[2]) not in live]:
            del self._pushed[key]
