"""Push firing alerts again to receivers that forget them (Alertmanager), before they do.

A receiver that wants this has ``resends = True`` and ``resend_every`` (a timedelta). Each
run queues, for every firing alert routed to such a receiver, one more "firing" delivery
when the last push is at least ``resend_every`` old and nothing for that alert is still
queued there (a queued "resolved" is never overtaken: the outbox keeps per-alert order).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from alerts.delivery import deliveries
from alerts.ledger import Ledger
from alerts.notifiers.notifier import Notifier
from alerts.outbox import Outbox
from alerts.state import AlertState, Notification


class Resender:
    """Refreshes firing alerts at receivers with ``resends``."""

    def __init__(
        self, *, ledger: Ledger, outbox: Outbox, notifiers: Mapping[str, Notifier]
    ) -> None:
        self._ledger = ledger
        self._outbox = outbox
        self._every: dict[str, timedelta] = {
            name: notifier.resend_every  # type: ignore[attr-defined]
            for name, notifier in notifiers.items()
            if getattr(notifier, "resends", False)
        }
        self._pushed: dict[tuple[str, str], datetime] = {}

    @property
    def period(self) -> timedelta | None:
        """How often to run (the shortest resend interval), or ``None`` when none resends."""
        return min(self._every.values(), default=None)

    def run(self, *, now: datetime) -> int:
        """Queue what is due; return how many deliveries were queued."""
        if not self._every:
            return 0
        queued = 0
        for alert in self._ledger.active():
            if alert.state is not AlertState.FIRING:
                continue
            for receiver in self._outbox.receivers_for(dict(alert.labels)):
                every = self._every.get(receiver)
                key = (receiver, alert.fingerprint)
                if every is None or self._outbox.queued(key):
                    continue
                last = self._pushed.setdefault(key, now)
                if now - last < every:
                    continue
                self._pushed[key] = now
                notification = Notification(alert=alert, at=now)
                self._outbox.enqueue(deliveries((notification,), receivers=(receiver,), now=now))
                queued += 1
        return queued

    def reset(self) -> None:
        self._pushed.clear()
