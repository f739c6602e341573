"""The stages a notification passes on its way to a receiver, each one small step.

Every stage has one method, ``__call__(item, now=...)``, and returns the item (changed or
not) to pass it on, or ``None`` to stop it there (``Stage``). There are two kinds of item:

- ``Intake``: one notification the evaluator decided on, before it is grouped or queued.
  ``Route`` says which receivers it goes to, ``Silence`` marks it muted (a muted
  notification is not sent, but its group still knows the alert), ``Render`` makes the
  payload with its links; ``Dedup`` leaves out what a peer engine already delivered (after
  an outage of the store); ``Inhibit`` marks it muted while an alert that explains it
  fires. Flap damping plugs in beside them.
- ``Attempt``: one delivery due to be sent. ``Fence`` stops it unless this engine holds
  the lease, and bounds the send by what is left of it; after the notifier was called,
  ``Retry`` turns a failure into the delivery's next state (retried, expired or failed) and
  ``Count`` counts the outcome.

``alerts.delivery.pipeline`` composes them in the order they run; the outbox holds the
queues and groups between them. Nothing here sleeps or reads a clock; the one step that
waits, the notifier's ``send``, is called through ``send`` between ``Fence`` and ``Retry``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from alerts.delivery.grouping import Destination
from alerts.delivery.inhibition import Inhibitor
from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery, notification_payload
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.retry import RetryPolicy
from alerts.delivery.routing import Router
from alerts.engine.state import Alert, Notification
from alerts.errors import NotificationError
from alerts.metrics import EngineMetrics
from alerts.silences.silence import Silences
from alerts.store.lease import Lease

log = logging.getLogger("dynoscope.alerts")

Item = TypeVar("Item")


class Stage(Protocol[Item]):
    """One step: the item passed on (changed or not), or ``None`` to stop it here."""

    def __call__(self, item: Item, *, now: datetime) -> Item | None: ...


def run(stages: tuple[Stage[Item], ...], item: Item, *, now: datetime) -> Item | None:
    """Pass ``item`` through ``stages`` in order, until one stops it."""
    current: Item | None = item
    for stage in stages:
        if current is None:
            return None
        current = stage(current, now=now)
    return current


# --- on the way in ------------------------------------------------------------------------


@dataclass(frozen=True)
class Intake:
    """A notification on its way to be grouped or queued."""

    notification: Notification
    destinations: tuple[Destination, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)
    muted_by: str | None = None  # the id of the silence holding it back

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.notification.alert.labels)


@dataclass(frozen=True)
class Route:
    """Each receiver the labels route to (every configured one without a router)."""

    receivers: tuple[str, ...]
    router: Router | None = None

    def destinations(self, labels: Mapping[str, str]) -> tuple[Destination, ...]:
        router = self.router if self.router is not None else Router(default=self.receivers)
        return tuple(d for d in router.destinations(labels) if d.receiver in self.receivers)

    def __call__(self, item: Intake, *, now: datetime) -> Intake:
        return replace(item, destinations=self.destinations(item.labels))


Delivered = tuple[str, str, str]  # receiver, dedup key, status


class PeerLog:
    """Notifications another engine delivered while the store was out of reach, remembered
    for a short while after the engine that leads took them in (``Outbox.settle``)."""

    def __init__(self) -> None:
        self._until: dict[Delivered, datetime] = {}

    def remember(self, delivered: Iterable[Delivered], *, until: datetime) -> None:
        for key in delivered:
            self._until[key] = until

    def delivered(self, key: Delivered, *, now: datetime) -> bool:
        until = self._until.get(key)
        if until is not None and now > until:
            del self._until[key]
            return False
        return until is not None


@dataclass(frozen=True)
class Dedup:
    """Leave out the receivers a peer already told of this transition (it decided it too,
    a moment earlier, while every engine acted on its own)."""

    log: PeerLog

    def __call__(self, item: Intake, *, now: datetime) -> Intake:
        key = item.notification.dedup_key
        status = item.notification.status
        kept = tuple(
            d
            for d in item.destinations
            if not self.log.delivered((d.receiver, key, status), now=now)
        )
        if len(kept) != len(item.destinations):
            log.info("notification %s (%s) already delivered by a peer", key, status)
        return replace(item, destinations=kept)


@dataclass(frozen=True)
class Silence:
    """Mark a notification a silence matches: counted (``silenced``) and logged, not sent."""

    silences: Silences | None
    count: Callable[[str, str], None]

    def __call__(self, item: Intake, *, now: datetime) -> Intake:
        if self.silences is None:
            return item
        silence = self.silences.muting(item.labels, now=now)
        if silence is None:
            return item
        notification = item.notification
        log.info(
            "notification %s (%s %s) held back by silence %s",
            notification.dedup_key,
            item.labels.get("alertname"),
            notification.status,
            silence.id,
        )
        for destination in item.destinations:
            self.count(destination.receiver, "silenced")
        return replace(item, muted_by=silence.id)


class HeldBack:
    """The episodes whose firing inhibition held back and nobody has been told of since: their
    resolution is held back too (nobody heard they fired). Telling an episode (a group
    message or a reminder listing it firing, once its source stopped) forgets it."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._episodes: dict[tuple[str, datetime], None] = {}

    def hold(self, alert: Alert) -> None:
        self._episodes[(alert.fingerprint, alert.active_at)] = None
        while len(self._episodes) > self.LIMIT:  # bounded: the oldest go first
            del self._episodes[next(iter(self._episodes))]

    def told(self, alert: Alert) -> None:
        self._episodes.pop((alert.fingerprint, alert.active_at), None)

    def take(self, alert: Alert) -> bool:
        """Whether ``alert``'s episode was held back and untold (forgotten from now on)."""
        return self._episodes.pop((alert.fingerprint, alert.active_at), False) is None


@dataclass(frozen=True)
class Inhibit:
    """Mark a firing notification that an alert explaining it holds back (``alerts.delivery.
    inhibition``): counted (``inhibited``) and logged, not sent; its group still knows it.
    A resolution is held back only when its firing was and nobody has been told since;
    otherwise whoever heard it fire hears it resolve."""

    inhibitor: Inhibitor | None
    count: Callable[[str, str], None]
    held: HeldBack = field(default_factory=HeldBack, compare=False, repr=False)

    def __call__(self, item: Intake, *, now: datetime) -> Intake:
        alert = item.notification.alert
        resolved = item.notification.status == "resolved"
        if self.inhibitor is None or item.muted_by is not None:
            if resolved:
                self.held.take(alert)  # a silence holds it anyway
            return item
        if resolved:
            if not self.held.take(alert):
                return item
            reason = "its firing was inhibited"
        else:
            source = self.inhibitor.inhibiting(item.labels, alert.fingerprint)
            if source is None:
                return item
            self.held.hold(alert)
            reason = f"inhibited by {source.rule} ({source.fingerprint})"
        log.info(
            "notification %s (%s %s) held back: %s",
            item.notification.dedup_key,
            item.labels.get("alertname"),
            item.notification.status,
            reason,
        )
        for destination in item.destinations:
            self.count(destination.receiver, "inhibited")
        return replace(item, muted_by=reason)


@dataclass(frozen=True)
class Render:
    """The payload receivers get: the notification's fields and its rendered links."""

    links: Links = field(default_factory=Links)

    def payload(self, notification: Notification) -> dict[str, Any]:
        payload = notification_payload(notification)
        links = self.links.render(payload)
        if links:
            payload["links"] = links
        return payload

    def __call__(self, item: Intake, *, now: datetime) -> Intake:
        return replace(item, payload=self.payload(item.notification))


# --- on the way out -----------------------------------------------------------------------

Result = Literal["sent", "retried", "expired", "failed"]


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed, as the notifier said (``NotificationError``) or as we saw it."""

    error: str
    retryable: bool = True
    retry_after: float | None = None


@dataclass(frozen=True)
class Attempt:
    """One delivery being sent: how long it may take, then what came of it."""

    delivery: Delivery
    timeout: float = math.inf
    failure: Failure | None = None
    result: Result | None = None  # set once the attempt is over
    changes: dict[str, Any] = field(default_factory=dict)  # what to change on the delivery


@dataclass(frozen=True)
class Fence:
    """Nothing is sent without the lease, and no send outlives it (fencing)."""

    lease: Lease | None
    timeout: float

    def held(self) -> float:
        return self.lease.remaining() if self.lease is not None else math.inf

    def __call__(self, item: Attempt, *, now: datetime) -> Attempt | None:
        held = self.held()
        if held <= 0:
            return None
        return replace(item, timeout=min(self.timeout, held))


@dataclass(frozen=True)
class Retry:
    """A finished attempt's effect on its delivery: delivered, or retried, expired or
    failed as the ``RetryPolicy`` says, logged."""

    policy: RetryPolicy

    def __call__(self, item: Attempt, *, now: datetime) -> Attempt:
        delivery = item.delivery
        attempts = delivery.attempts + 1
        if item.failure is None:
            changes = {"attempts": attempts, "delivered_at": now, "last_error": None}
            return replace(item, result="sent", changes=changes)
        failure = item.failure
        error = failure.error
        message = error if error.startswith(delivery.receiver) else f"{delivery.receiver}: {error}"
        verdict = self.policy.after_failure(
            delivery, now=now, retryable=failure.retryable, retry_after=failure.retry_after
        )
        changes = {"attempts": attempts, "last_error": message[:300]}
        if verdict.outcome == "retried":
            changes["next_attempt_at"] = verdict.retry_at
            log.warning("notification %s will be retried: %s", delivery.dedup_key, message)
        else:
            changes["abandoned_at"] = now
            if verdict.outcome == "expired":
                log.error(
                    "notification %s given up after %d attempt(s) over %s: %s",
                    delivery.dedup_key,
                    attempts,
                    now - delivery.created_at,
                    message,
                )
            else:
                log.error("notification %s abandoned: %s", delivery.dedup_key, message)
        return replace(item, result=verdict.outcome, changes=changes)


@dataclass(frozen=True)
class Count:
    """Count each attempt's result per receiver (``alert_notifications_total``)."""

    metrics: EngineMetrics | None

    def __call__(self, item: Attempt, *, now: datetime) -> Attempt:
        if item.result is not None:
            count(self.metrics, item.delivery.receiver, item.result)
        return item


def count(metrics: EngineMetrics | None, receiver: str, outcome: str) -> None:
    if metrics is not None:
        metrics.notifications.labels(receiver=receiver, outcome=outcome).inc()


async def send(notifier: Notifier, attempt: Attempt) -> Failure | None:
    """Call the notifier, within the attempt's time: ``None`` when it took the delivery.

    Any exception counts as a failed attempt, so one broken receiver never stalls its queue;
    one that is not a ``NotificationError`` (a notifier bug, an unexpected library error) is
    logged with its traceback once per delivery."""
    delivery = attempt.delivery
    try:
        async with asyncio.timeout(attempt.timeout):
            await notifier.send(delivery)
    except NotificationError as exc:
        return Failure(str(exc), retryable=exc.retryable, retry_after=exc.retry_after)
    except TimeoutError as exc:
        return Failure(str(exc) or "timed out")
    except Exception as exc:
        if delivery.attempts == 0:
            log.exception("receiver %s failed unexpectedly", delivery.receiver)
        return Failure(type(exc).__name__)
    return None
