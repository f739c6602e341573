"""Alertmanager-style aggregation groups: alerts that start together arrive as one message.

A group is one receiver, one route and one set of values of the route's ``group_by`` labels.
Its first message waits ``group_wait`` to collect the alerts that start together; after that
the group is looked at every ``group_interval``, and sends when something changed since its
last message (an alert fired, resolved, or was announced again by its rule) or, with nothing
new, when ``repeat_interval`` has passed since its last message and something still fires.
Nothing here reads a clock or does I/O: ``Groups.flush(now=...)`` is stepped by tests.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 11, 29, tzinfo=UTC)
    >>> groups = Groups()
    >>> where = Destination("slack", "route", GroupSettings())
    >>> for name in ("a", "b"):
    ...     groups.add(where, member(name, {"alertname": "Hot", "host": name}), now=t0)
    >>> groups.flush(now=t0 + timedelta(seconds=29))
    []
    >>> [len(m.members) for m in groups.flush(now=t0 + timedelta(seconds=30))]
    [2]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from alerts.delivery.notification import Delivery, group_payload, new_id
from alerts.engine.state import Alert

EVERY_LABEL = "..."


@dataclass(frozen=True)
class GroupSettings:
    """How a route groups: by which labels, and its three timers (``None``: no reminders)."""

    by: tuple[str, ...] = ("alertname",)
    wait: timedelta = timedelta(seconds=30)
    interval: timedelta = timedelta(minutes=5)
    repeat: timedelta | None = None

    @classmethod
    def ungrouped(cls, repeat: timedelta | None = None) -> GroupSettings:
        """Each alert a group of its own, sent at once: the behaviour without a receivers
        file (the console and the ``ALERT_WEBHOOK_URL`` shorthand)."""
        return cls(by=(EVERY_LABEL,), wait=timedelta(0), interval=timedelta(0), repeat=repeat)

    def labels_of(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The group's labels: the ``group_by`` ones the alert has (every one for ``...``)."""
        if EVERY_LABEL in self.by:
            return dict(sorted(labels.items()))
        return {name: labels[name] for name in self.by if name in labels}


@dataclass(frozen=True)
class Destination:
    """One receiver an alert goes to, through which route (``route`` or ``routes.N``)."""

    receiver: str
    route: str
    settings: GroupSettings

    def key(self, labels: Mapping[str, str]) -> str:
        """The group's key (16 hex digits, the outbox's dedup key for its messages)."""
        group = self.settings.labels_of(labels)
        text = json.dumps([self.receiver, self.route, sorted(group.items())])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Member:
    """One alert in a group: its latest status and payload (``notification_payload``)."""

    fingerprint: str
    status: str
    labels: Mapping[str, str]
    payload: dict[str, Any]
    pending: bool = True  # notified since the group's last message
    alert: Alert | None = None  # for acknowledgement checks at flush time
    parked: Delivery | None = None  # its row in the store until a message carries it


def member(fingerprint: str, labels: Mapping[str, str], *, status: str = "firing") -> Member:
    """A member with a minimal payload (doctests, tests)."""
    return Member(fingerprint, status, dict(labels), {"labels": dict(labels)})


@dataclass
class Group:
    """The alerts of one group and its timers."""

    key: str
    destination: Destination
    labels: dict[str, str]
    flush_at: datetime
    sent_at: datetime | None = None
    members: dict[str, Member] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """What one group says at one flush: the members to list, in the order they joined
    (none: nothing to say), and those notified since the last flush (``settled``)."""

    key: str
    destination: Destination
    labels: dict[str, str]
    members: tuple[Member, ...]
    settled: tuple[Member, ...] = ()

    @property
    def status(self) -> str:
        return "firing" if any(m.status == "firing" for m in self.members) else "resolved"

    def delivery(self, *, now: datetime) -> Delivery:
        """The outbox's delivery of this message: due now, the group's key as dedup key."""
        payload = group_payload(
            key=self.key,
            labels=self.labels,
            route=self.destination.route,
            alerts=[{**m.payload, "status": m.status} for m in self.members],
        )
        return Delivery(
            id=new_id(),
            receiver=self.destination.receiver,
            dedup_key=self.key,
            status=self.status,
            payload=payload,
            created_at=now,
            next_attempt_at=now,
        )


Hidden = Callable[[Member, datetime], bool]


def _never(member: Member, now: datetime) -> bool:
    return False


class Groups:
    """Every aggregation group, by key. ``muted`` members are left out of messages;
    ``quiet`` ones (acknowledged) are left out of reminders only."""

    def __init__(
        self,
        *,
        muted: Hidden = _never,
        quiet: Hidden = _never,
        told: Callable[[Member], None] | None = None,
    ) -> None:
        self._groups: dict[str, Group] = {}
        self._muted = muted
        self._quiet = quiet
        self._told = told

    def __len__(self) -> int:
        return len(self._groups)

    def waiting(self) -> int:
        """Members notified but not yet in a message."""
        return sum(m.pending for g in self._groups.values() for m in g.members.values())

    def reset(self) -> None:
        self._groups.clear()

    def add(self, destination: Destination, new: Member, *, now: datetime) -> Member | None:
        """Put ``new`` in its group (made now, first message after ``group_wait``); return
        the member it replaces, if any."""
        group = self._group(destination, new.labels, now=now)
        old = group.members.pop(new.fingerprint, None)  # re-inserted last: in notified order
        group.members[new.fingerprint] = new
        return old

    def track(self, destination: Destination, known: Member, *, now: datetime) -> None:
        """Know of an alert already announced (e.g. before a restart), for reminders only."""
        group = self._group(destination, known.labels, now=now, announced=True)
        group.members.setdefault(known.fingerprint, replace(known, pending=False))

    def has(self, destination: Destination, new: Member) -> bool:
        """Whether ``new``'s alert is in its group already."""
        group = self._groups.get(destination.key(new.labels))
        return group is not None and new.fingerprint in group.members

    def flush(self, *, now: datetime) -> list[Message]:
        """The messages of every group due at ``now``, oldest group first (a message may
        list nothing, when all that changed was silenced)."""
        messages = []
        for key, group in list(self._groups.items()):
            if now < group.flush_at:
                continue
            message = self._flush(group, now=now)
            if message is not None:
                messages.append(message)
            if not group.members:
                del self._groups[key]
        return messages

    def _group(
        self, destination: Destination, labels: Mapping[str, str], *, now: datetime,
        announced: bool = False,
    ) -> Group:  # fmt: skip
        key = destination.key(labels)
        group = self._groups.get(key)
        if group is None:
            group = Group(
                key=key,
                destination=destination,
                labels=destination.settings.labels_of(labels),
                flush_at=now + destination.settings.wait,
                sent_at=now if announced else None,
            )
            self._groups[key] = group
        return group

    def _flush(self, group: Group, *, now: datetime) -> Message | None:
        settings = group.destination.settings
        group.flush_at = now + settings.interval
        before = list(group.members.values())
        shown = [m for m in before if not self._muted(m, now)]
        changed = any(m.pending for m in shown)
        listed: list[Member] = []
        if changed:
            # Everything still firing, and what resolved since the last message.
            listed = [m for m in shown if m.status == "firing" or m.pending]
        elif self._reminder_due(group, now=now):
            listed = [m for m in shown if m.status == "firing" and not self._quiet(m, now)]
        # A resolved member has been announced (or held back by a silence): it leaves.
        group.members = {
            fp: replace(m, pending=False) for fp, m in group.members.items() if m.status == "firing"
        }
        settled = tuple(m for m in before if m.pending)
        if listed:
            group.sent_at = now
            if self._told is not None:
                for member in listed:
                    self._told(member)
        elif not settled:
            return None
        return Message(group.key, group.destination, dict(group.labels), tuple(listed), settled)

    def _reminder_due(self, group: Group, *, now: datetime) -> bool:
        repeat = group.destination.settings.repeat
        if repeat is None:
            return False
        if group.sent_at is None:
            # Everything in it arrived under a silence: reminders count from first sight.
            group.sent_at = now
            return False
        return now - group.sent_at >= repeat
