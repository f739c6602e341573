"""A notification queued for one receiver: the value notifiers receive and the outbox keeps.

A delivery is identified by ``id``, made when it is queued; ids sort in the order deliveries
were made, so a restart can queue undelivered ones again in their original order. Receivers
deduplicate on ``dedup_key``: the alert's fingerprint, or for the message of an aggregation
group (``alerts.delivery.grouping``) the group's key, its payload listing each alert's payload.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from alerts.engine.query import Examples
from alerts.engine.state import Notification

_sequence = itertools.count()


def new_id() -> str:
    """A unique id that sorts by creation, also across restarts (nanoseconds, then a counter)."""
    return f"{time.time_ns():020d}{next(_sequence) % 1_000_000:06d}"


@dataclass(frozen=True)
class Delivery:
    """One notification for one receiver (``payload`` is ``notification_payload``)."""

    id: str
    receiver: str
    dedup_key: str
    status: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    abandoned_at: datetime | None = None
    last_error: str | None = None

    @property
    def finished(self) -> bool:
        return self.delivered_at is not None or self.abandoned_at is not None


def _number(value: float) -> float | None:
    # NaN is not JSON, and SQLite stores it as NULL anyway: the same everywhere.
    return None if math.isnan(value) else value


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def context_payload(examples: Examples) -> dict[str, Any]:
    """Example traces and slowest statements as JSON (``payload["context"]``)."""
    return {
        "trace_ids": list(examples.trace_ids),
        "queries": [
            {
                "fingerprint": query.fingerprint,
                "operation": query.operation,
                "table": query.table,
                "seconds": query.seconds,
                "trace_id": query.trace_id,
            }
            for query in examples.queries
        ],
    }


def notification_payload(notification: Notification) -> dict[str, Any]:
    """What receivers need about one alert, in Alertmanager's field names, plus the rule's
    comparison (``op``, ``threshold``) and, when found at firing time, ``context``."""
    alert = notification.alert
    payload: dict[str, Any] = {
        "status": notification.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": iso(alert.fired_at or alert.active_at),
        "endsAt": iso(alert.resolved_at),
        "fingerprint": alert.fingerprint,
        "value": _number(alert.value),
        "op": alert.op,
        "threshold": alert.threshold,
    }
    if notification.context:
        payload["context"] = context_payload(notification.context)
    return payload


def deliveries(
    notifications: tuple[Notification, ...], *, receivers: tuple[str, ...], now: datetime
) -> list[Delivery]:
    """One delivery per notification and receiver, due at once."""
    return [
        Delivery(
            id=new_id(),
            receiver=receiver,
            dedup_key=n.dedup_key,
            status=n.status,
            payload=notification_payload(n),
            created_at=now,
            next_attempt_at=now,
        )
        for n in notifications
        for receiver in receivers
    ]


def group_payload(*, key: str, labels: Mapping[str, str], route: str,
                  alerts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The payload of one group's message: its key and labels, and each alert's payload."""
    return {
        "groupKey": key,
        "groupLabels": dict(labels),
        "route": route,
        "alerts": [dict(alert) for alert in alerts],
    }


def alerts_of(delivery: Delivery) -> tuple[Delivery, ...]:
    """Each alert of ``delivery`` as a delivery of its own, for per-alert rendering: a
    group's message lists several; any other delivery is one alert already.

    >>> one = Delivery("1", "hook", "f1", "firing", {"labels": {}}, datetime.now())
    >>> alerts_of(one) == (one,)
    True
    """
    listed = delivery.payload.get("alerts")
    if listed is None:
        return (delivery,)
    return tuple(
        replace(delivery, dedup_key=alert["fingerprint"], status=alert["status"], payload=alert)
        for alert in listed
    )
