"""Deliver notifications: at least once, with retries and backoff, from memory.

Evaluation queues deliveries here and never waits for them; this runs as its own scheduler
job, so a slow or dead receiver delays nothing but its own messages, and nothing here waits
on a database either (each change is journaled and written behind by ``alerts.store.writer``).

Each notification and each attempt passes the stages of ``alerts.delivery.pipeline`` (route,
silence, render on the way in; fence, send, retry, count on the way out); this class holds
what lies between them: the queues and the aggregation groups. A failed attempt is retried or
given up as the ``RetryPolicy`` says (``alerts.delivery.retry``). Per receiver and alert,
deliveries go out strictly in the order they were queued: a "resolved" never overtakes the
"firing" before it.

Receivers that group (all but Alertmanager, which groups by itself) get one message per
aggregation group (``alerts.delivery.grouping``) instead of one per alert. A notification
waiting in its group is kept in the store as a "parked" delivery (its payload says which
group), so an engine taking over puts it back in its group rather than losing it; the group's
message and the end of the parked rows are journaled together.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from alerts.delivery.grouping import Destination, Groups, Member
from alerts.delivery.inhibition import Inhibitor
from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery, new_id
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.pipeline import compose
from alerts.delivery.retry import RetryPolicy
from alerts.delivery.routing import Router
from alerts.delivery.stages import Attempt, Intake, run, send
from alerts.engine.ledger import Ledger
from alerts.engine.query import labels_of
from alerts.engine.state import Alert, Notification, fingerprint
from alerts.metrics import EngineMetrics
from alerts.silences.silence import Silences
from alerts.store.lease import Lease

log = logging.getLogger("dynoscope.alerts")

Key = tuple[str, str]


class Outbox:
    """Queues of deliveries per receiver and alert, drained through the notifiers."""

    def __init__(
        self,
        *,
        notifiers: Mapping[str, Notifier],
        ledger: Ledger,
        metrics: EngineMetrics | None = None,
        retry: RetryPolicy = RetryPolicy(),
        lease: Lease | None = None,
        router: Router | None = None,
        silences: Silences | None = None,
        links: Links = Links(),
        inhibitor: Inhibitor | None = None,
    ) -> None:
        self._notifiers = dict(notifiers)
        self._silences = silences
        self._inhibitor = inhibitor
        self._router = router
        self._ledger = ledger
        self._pipeline = compose(
            receivers=self._notifiers,
            metrics=metrics,
            retry=retry,
            lease=lease,
            router=router,
            silences=silences,
            links=links,
            inhibitor=inhibitor,
        )
        self._queues: dict[Key, deque[Delivery]] = {}
        self._seen: set[Key] = set()
        self._groups = Groups(
            muted=lambda m, now: self.muted(m.labels, now=now),
            quiet=lambda m, now: m.alert is not None and self.acknowledged(m.alert, now=now),
            told=self._told,
        )

    @property
    def receivers(self) -> tuple[str, ...]:
        return tuple(sorted(self._notifiers))

    def pending(self) -> int:
        """Deliveries queued, and notifications waiting in their group."""
        return sum(len(queue) for queue in self._queues.values()) + self._groups.waiting()

    def receivers_for(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The receivers an alert with ``labels`` goes to (every one without a router)."""
        return tuple(d.receiver for d in self.destinations(labels))

    def destinations(self, labels: Mapping[str, str]) -> tuple[Destination, ...]:
        """Each receiver an alert with ``labels`` goes to, and how it is grouped there."""
        return self._pipeline.route.destinations(labels)

    def groups(self, receiver: str) -> bool:
        """Whether ``receiver`` gets one message per group (not Alertmanager's push)."""
        notifier = self._notifiers.get(receiver)
        return notifier is None or notifier.groups

    def repeat_for(self, labels: Mapping[str, str]) -> timedelta | None:
        """How often a still-firing alert with ``labels`` is announced again, if at all."""
        return self._router.repeat_for(labels) if self._router is not None else None

    def muted(self, labels: Mapping[str, str], *, now: datetime) -> bool:
        """Whether a silence, or an alert that explains it, holds back an alert with
        ``labels``: left out of its group's messages and reminders."""
        if self._silences is not None and self._silences.muting(labels, now=now) is not None:
            return True
        if self._inhibitor is None:
            return False
        return self._inhibitor.inhibiting(labels, fingerprint(labels_of(labels))) is not None

    def acknowledged(self, alert: Alert, *, now: datetime) -> bool:
        return self._silences is not None and self._silences.acknowledged(alert, now=now)

    def notify(self, notifications: Iterable[Notification], *, now: datetime) -> None:
        """Pass each notification through the intake stages (route, silence, render), then
        put it in its group for every receiver it goes to (queue it at once for a receiver
        that does not group); a silenced one is not sent, but its group still knows the
        alert."""
        for notification in notifications:
            item = run(self._pipeline.intake, Intake(notification), now=now)
            if item is None:
                continue
            for destination in item.destinations:
                self._route(item, destination, now=now)
        # Groups that do not wait are queued at once, so the scheduler writes their message
        # before it is sent, as it did before grouping.
        self.flush_groups(now=now)

    def _route(self, item: Intake, destination: Destination, *, now: datetime) -> None:
        notification, payload, muted = item.notification, item.payload, item.muted_by is not None
        single = _delivery(notification, payload, destination.receiver, now=now)
        if not self.groups(destination.receiver):
            if not muted:
                self.enqueue([single])
            return
        labels = dict(notification.alert.labels)
        key = destination.key(labels)
        parked = None
        if not muted:
            parked = replace(single, payload={**payload, "group": {"key": key}})
            self._ledger.journal(parked)
        new = Member(
            fingerprint=notification.dedup_key,
            status=notification.status,
            labels=labels,
            payload=dict(payload),
            pending=not muted,
            alert=notification.alert,
            parked=parked,
        )
        self._settle(self._groups.add(destination, new, now=now), now=now)

    def _told(self, member: Member) -> None:
        if member.alert is not None and member.status == "firing":
            self._pipeline.inhibit.held.told(member.alert)

    def delivery(self, notification: Notification, receiver: str, *, now: datetime) -> Delivery:
        """``notification`` for ``receiver`` alone, due now, with its links: what a reminder
        or a refresh of one alert sends."""
        if notification.status == "firing":
            self._pipeline.inhibit.held.told(notification.alert)
        return _delivery(
            notification, self._pipeline.render.payload(notification), receiver, now=now
        )

    def track(self, alert: Alert, *, now: datetime) -> None:
        """Make sure the groups know of a firing ``alert`` announced before (e.g. by an
        engine before a restart), so their reminders include it."""
        labels = dict(alert.labels)
        known = Member(alert.fingerprint, "firing", labels, {}, pending=False, alert=alert)
        for destination in self.destinations(labels):
            if self.groups(destination.receiver) and not self._groups.has(destination, known):
                payload = self._pipeline.render.payload(Notification(alert=alert, at=now))
                self._groups.track(destination, replace(known, payload=payload), now=now)

    def flush_groups(self, *, now: datetime) -> int:
        """Queue the message of every group due at ``now``; return how many were queued."""
        queued = 0
        for message in self._groups.flush(now=now):
            if message.members:
                self.enqueue([message.delivery(now=now)])
                queued += 1
            for member in message.settled:
                self._settle(member, now=now)
        return queued

    def _settle(self, member: Member | None, *, now: datetime) -> None:
        # Carried by a group's message (journaled with it), or replaced by a newer
        # notification of the same alert: the parked row is done either way.
        if member is not None and member.parked is not None:
            self._ledger.journal(replace(member.parked, delivered_at=now))

    def settle(
        self, delivered: Iterable[tuple[str, str, str]], *, now: datetime, keep: timedelta
    ) -> int:
        """Finish queued deliveries that another engine already delivered: each
        ``(receiver, dedup_key, status)`` (while the store was out of reach, every engine
        sent on its own), and leave out the same ones decided here within ``keep``. Returns
        how many were finished without being sent again."""
        done = set(delivered)
        self._pipeline.peers.remember(done, until=now + keep)
        settled = 0
        for queue in list(self._queues.values()):
            for delivery in list(queue):
                if (delivery.receiver, delivery.dedup_key, delivery.status) in done:
                    queue.remove(delivery)
                    self._ledger.journal(
                        replace(delivery, delivered_at=now, last_error="delivered by a peer")
                    )
                    settled += 1
        for key in [k for k, q in self._queues.items() if not q]:
            del self._queues[key]
        return settled

    def queued(self, key: Key) -> bool:
        """Whether a delivery for ``(receiver, dedup_key)`` is still waiting."""
        return bool(self._queues.get(key))

    def reset(self) -> None:
        """Drop every queue (this engine lost the lead; its successor restores the store's)."""
        self._queues.clear()
        self._seen.clear()
        self._groups.reset()

    def enqueue(self, deliveries: Iterable[Delivery]) -> None:
        """Queue new deliveries (each is journaled for the store)."""
        for delivery in deliveries:
            key = (delivery.receiver, delivery.dedup_key)
            self._queues.setdefault(key, deque()).append(delivery)
            self._seen.add(key)
            self._ledger.journal(delivery)

    def restore(self, stored: Iterable[Delivery], *, now: datetime) -> int:
        """Queue deliveries left unfinished before a restart, ahead of newer ones.

        A stored delivery for an alert this process has already notified about is stale (the
        receiver has heard something newer): it is abandoned rather than sent out of order.
        One that was waiting in its group (parked) goes back to its group.
        """
        restored = 0
        by_key: dict[Key, list[Delivery]] = {}
        for delivery in stored:
            if "group" in delivery.payload:
                restored += self._unpark(delivery, now=now)
                continue
            key = (delivery.receiver, delivery.dedup_key)
            if key in self._seen:
                self._ledger.journal(
                    replace(delivery, abandoned_at=now, last_error="superseded after a restart")
                )
                continue
            by_key.setdefault(key, []).append(delivery)
        for key, waiting in by_key.items():
            self._queues.setdefault(key, deque()).extendleft(reversed(waiting))
            self._seen.add(key)
            restored += len(waiting)
        # Groups that do not wait send now, before anything newer joins them: a restored
        # "firing" is not folded into a "resolved" decided after the restart.
        self.flush_groups(now=now)
        return restored

    def _unpark(self, delivery: Delivery, *, now: datetime) -> int:
        """Put a notification that was waiting in its group back in it (1), unless this
        process has heard newer of that alert (0)."""
        labels = dict(delivery.payload.get("labels") or {})
        payload = {k: v for k, v in delivery.payload.items() if k != "group"}
        where = [d for d in self.destinations(labels) if d.receiver == delivery.receiver]
        new = Member(delivery.dedup_key, delivery.status, labels, payload, parked=delivery)
        if not where or not self.groups(delivery.receiver) or self._groups.has(where[0], new):
            self._ledger.journal(
                replace(delivery, abandoned_at=now, last_error="superseded after a restart")
            )
            return 0
        self._groups.add(where[0], new, now=now)
        return 1

    async def deliver(self, *, now: datetime) -> int:
        """Queue the messages of groups that are due, then attempt every due delivery once
        (concurrently); return how many were accepted.

        Nothing is sent without the lease, and no send outlives it: one still running when the
        lease runs out is cancelled (fencing), and retried by whoever holds the lease next."""
        if self._pipeline.fence.held() <= 0:
            return 0
        self.flush_groups(now=now)
        due = [
            queue[0]
            for queue in self._queues.values()
            if queue and (queue[0].next_attempt_at is None or queue[0].next_attempt_at <= now)
        ]
        outcomes = await asyncio.gather(*(self._attempt(d, now=now) for d in due))
        return sum(outcomes)

    async def _attempt(self, delivery: Delivery, *, now: datetime) -> bool:
        notifier = self._notifiers.get(delivery.receiver)
        if notifier is None:
            self._finish(delivery, abandoned_at=now, last_error="receiver no longer configured")
            return False
        attempt = run(self._pipeline.before_send, Attempt(delivery), now=now)
        if attempt is None:
            return False
        attempt = replace(attempt, failure=await send(notifier, attempt))
        done = run(self._pipeline.after_send, attempt, now=now)
        if done is None:
            return False
        self._finish(delivery, **done.changes)
        return done.result == "sent"

    def _finish(self, delivery: Delivery, **changes: object) -> None:
        updated = replace(delivery, **changes)  # type: ignore[arg-type]
        key = (delivery.receiver, delivery.dedup_key)
        queue = self._queues.get(key)
        if queue and queue[0] is delivery:
            if updated.finished:
                queue.popleft()
                if not queue:
                    del self._queues[key]
            else:
                queue[0] = updated
        self._ledger.journal(updated)


def _delivery(
    notification: Notification, payload: dict[str, Any], receiver: str, *, now: datetime
) -> Delivery:
    return Delivery(
        id=new_id(),
        receiver=receiver,
        dedup_key=notification.dedup_key,
        status=notification.status,
        payload=dict(payload),
        created_at=now,
        next_attempt_at=now,
    )
