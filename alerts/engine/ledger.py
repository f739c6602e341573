"""Alert state in memory: the engine's authority while it runs.

Evaluation reads the previous alerts from here and records the new ones here, so it never
waits on a database. Every change is also journaled for the store (``alerts.store.writer`` takes
the journal and writes it behind); a journal that could not be written is put back and
written with the next batch, so nothing decided while the store was down is lost.

At start (or when a store that was down at start comes back) the stored alerts are adopted:
they continue with their timers, and alerts of rules that no longer exist are resolved, so
a rule removed from the files does not leave an alert firing for ever.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from alerts.delivery.notification import Delivery, new_id
from alerts.engine.state import Alert, AlertState, Evaluation, Notification
from alerts.store.store import Changes, HistoryEntry

log = logging.getLogger("dynoscope.alerts")


def _timers(alerts: Iterable[Alert]) -> tuple[object, ...]:
    # What a restart needs; the value and annotations change every cycle and are refreshed
    # by the first evaluation after a restart anyway.
    return tuple(
        (a.fingerprint, a.state, a.active_at, a.fired_at, a.last_sent_at, a.keep_firing_since)
        for a in alerts
    )


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(a, b) if a is not None and b is not None else a or b


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a is not None and b is not None else a or b


def merge(stored: Alert, current: Alert) -> Alert:
    """One alert known both to the store (from before a restart) and to memory (since)."""
    merged = replace(
        current,
        active_at=min(stored.active_at, current.active_at),
        last_sent_at=_later(stored.last_sent_at, current.last_sent_at),
    )
    if stored.state is AlertState.FIRING:
        # It has been firing all along: announced once already, not again.
        fired_at = _earlier(stored.fired_at, current.fired_at)
        merged = replace(merged, state=AlertState.FIRING, fired_at=fired_at)
    return merged


class Ledger:
    """Active alerts by rule, recent transitions, and the journal the store has not seen."""

    def __init__(self, *, recent: int = 1000, history_backlog: int = 100_000) -> None:
        self._alerts: dict[str, tuple[Alert, ...]] = {}
        self.recent: deque[HistoryEntry] = deque(maxlen=recent)
        self._journal = Changes()
        self._history_backlog = history_backlog
        self.dropped_history = 0
        # A peer's transitions merged after a store outage, each with its tolerance.
        self._merged: list[tuple[HistoryEntry, timedelta]] = []

    def reset(self) -> None:
        """Forget everything (this engine lost the lead: the store's copy is the truth now)."""
        self._alerts.clear()
        self.recent.clear()
        self._journal = Changes()
        self._merged = []

    def follow(self, alerts: Iterable[Alert]) -> None:
        """Mirror the alerts a leader keeps in the store (a standby's copy, journaled for
        nobody): what this engine goes on from if it must act without the store."""
        by_rule: dict[str, list[Alert]] = {}
        for alert in alerts:
            by_rule.setdefault(alert.rule, []).append(alert)
        self._alerts = {
            rule: tuple(sorted(group, key=lambda a: a.fingerprint))
            for rule, group in by_rule.items()
        }

    def rewrite(self, rules: Iterable[str]) -> None:
        """Journal the whole active set of every rule: memory replaces what the store holds."""
        for rule in rules:
            self._journal.states[rule] = self._alerts.get(rule, ())

    def previous(self, rule: str) -> tuple[Alert, ...]:
        return self._alerts.get(rule, ())

    def active(self) -> list[Alert]:
        """Every pending and firing alert, oldest first."""
        alerts = [alert for group in self._alerts.values() for alert in group]
        return sorted(alerts, key=lambda a: (a.active_at, a.fingerprint))

    def record(self, evaluations: Mapping[str, Evaluation], *, now: datetime) -> None:
        """Keep what an evaluation cycle decided (failed evaluations changed nothing)."""
        for name, evaluation in evaluations.items():
            if evaluation.failed:
                continue
            self._set(name, evaluation.alerts)
            for alert in evaluation.changes:
                if not self._known_from_peer(alert, now=now):
                    self._history(HistoryEntry.of(alert, id=new_id(), at=now))

    def _known_from_peer(self, alert: Alert, *, now: datetime) -> bool:
        """Whether a peer's merged history already holds this transition (this engine
        reaches it a moment after the peer did); each merged entry answers once."""
        # Past its tolerance an entry can answer nothing any more: let it go.
        self._merged = [(e, t) for e, t in self._merged if now - e.at <= t]
        for index, (entry, tolerance) in enumerate(self._merged):
            if (
                entry.fingerprint == alert.fingerprint
                and entry.state is alert.state
                and abs(entry.at - now) <= tolerance
            ):
                del self._merged[index]
                return True
        return False

    def decided_since(self, since: datetime) -> tuple[list[HistoryEntry], list[Delivery]]:
        """What this engine decided from ``since`` on: its transitions, and the deliveries
        it completed that the store has not seen (e.g. while acting without the store)."""
        transitions = [entry for entry in self.recent if entry.at >= since]
        delivered = [
            d
            for d in self._journal.deliveries.values()
            if d.delivered_at is not None and d.delivered_at >= since
        ]
        return transitions, delivered

    def merge_history(self, entries: Iterable[HistoryEntry], *, tolerance: timedelta) -> int:
        """Add transitions another engine decided while the store was out of reach, except
        those already known: the same id, or the same alert reaching the same state within
        ``tolerance`` (two engines evaluating the same data a little apart). Returns how many
        were added (journaled for the store; ids are kept, so a second merge adds nothing)."""
        entries = list(entries)
        known = list(self.recent)
        self._merged = [(e, tolerance) for e in entries]
        added = 0
        for entry in sorted(entries, key=lambda e: e.at):
            same = any(
                k.id == entry.id
                or (
                    k.fingerprint == entry.fingerprint
                    and k.state is entry.state
                    and abs(k.at - entry.at) <= tolerance
                )
                for k in known
            )
            if not same:
                self._history(entry)
                known.append(entry)
                added += 1
        return added

    def journal(self, delivery: Delivery) -> None:
        """Remember the latest version of ``delivery`` for the store."""
        self._journal.deliveries[delivery.id] = delivery

    def take(self) -> Changes:
        """Everything the store has not seen yet; the journal starts empty again."""
        taken, self._journal = self._journal, Changes()
        return taken

    def put_back(self, changes: Changes) -> None:
        """A write of ``changes`` failed: keep them, under anything journaled since."""
        self._journal = changes.under(self._journal)
        self._trim()

    @property
    def backlog(self) -> int:
        return len(self._journal)

    def adopt(
        self, stored: Mapping[str, tuple[Alert, ...]], *, rules: Collection[str], now: datetime
    ) -> list[Notification]:
        """Take over alerts stored before this process started; return what must be
        announced now (alerts of rules that no longer exist are resolved)."""
        notifications: list[Notification] = []
        for name, alerts in stored.items():
            if name not in rules:
                notifications.extend(self._retire(name, alerts, now=now))
                continue
            current = {a.fingerprint: a for a in self._alerts.get(name, ())}
            for alert in alerts:
                known = current.get(alert.fingerprint)
                current[alert.fingerprint] = alert if known is None else merge(alert, known)
            merged = tuple(sorted(current.values(), key=lambda a: a.fingerprint))
            self._alerts[name] = merged
            self._journal.states[name] = merged
        return notifications

    def _retire(self, name: str, alerts: Iterable[Alert], *, now: datetime) -> list[Notification]:
        notifications = []
        for alert in alerts:
            if alert.state is AlertState.FIRING:
                resolved = replace(
                    alert, state=AlertState.RESOLVED, resolved_at=now, last_sent_at=now
                )
                notifications.append(Notification(alert=resolved, at=now))
                self._history(HistoryEntry.of(resolved, id=new_id(), at=now))
        self._journal.states[name] = ()
        if notifications:
            log.info("rule %s is gone: %d firing alert(s) resolved", name, len(notifications))
        return notifications

    def _set(self, name: str, alerts: tuple[Alert, ...]) -> None:
        before = self._alerts.get(name, ())
        if alerts:
            self._alerts[name] = alerts
        else:
            self._alerts.pop(name, None)
        if _timers(before) != _timers(alerts):
            self._journal.states[name] = alerts

    def _history(self, entry: HistoryEntry) -> None:
        self.recent.append(entry)
        self._journal.history.append(entry)
        self._trim()

    def _trim(self) -> None:
        excess = len(self._journal.history) - self._history_backlog
        if excess > 0:
            # Bounded while the store is down for long; state and deliveries are never dropped.
            del self._journal.history[:excess]
            self.dropped_history += excess
