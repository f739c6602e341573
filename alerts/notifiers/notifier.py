"""The interface every receiver implements."""

from __future__ import annotations

from typing import Protocol

from alerts.delivery import Delivery


class Notifier(Protocol):
    """Deliver one queued notification, or raise ``NotificationError``."""

    name: str

    async def send(self, delivery: Delivery) -> None: ...
