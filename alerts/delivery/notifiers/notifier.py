"""The interface every receiver implements."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from alerts.delivery.notification import Delivery


class Notifier(Protocol):
    """Deliver one queued notification, or raise ``NotificationError``.

    A delivery is one alert or one aggregation group's message; ``alerts_of(delivery)``
    (``alerts.delivery.notification``) gives each alert of either as a delivery of its own.
    A notifier with ``groups = False`` gets every alert on its own, at once (Alertmanager's
    push)."""

    name: str
    # One message per aggregation group (True), or every alert on its own at once (False).
    groups: bool
    # A receiver that forgets an alert nobody pushes again (Alertmanager) gets every firing
    # alert again this often; None for receivers that remember.
    resend_every: timedelta | None

    async def send(self, delivery: Delivery) -> None: ...
