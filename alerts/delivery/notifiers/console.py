"""Notifications as one structured (JSON) log line per alert: the embedded-mode default.

{"event": "alert", "status": "firing", "alertname": "DatabaseSlowQuery", "labels": {...},
 "annotations": {...}, "startsAt": "2026-11-26T09:00:00Z", "fingerprint": "..."}

A group's message is logged as one line per alert, written together, each with the group's
``groupKey``: log searches for one alert keep working, and the key ties a message together.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.notifiers.fields import condition_of

log = logging.getLogger("dynoscope.alerts")


def console_line(payload: dict[str, Any], *, status: str, fingerprint: str) -> dict[str, Any]:
    """The log line's fields for one alert: its payload plus the condition as text."""
    line: dict[str, Any] = {
        "event": "alert",
        "status": status,
        "alertname": payload["labels"].get("alertname"),
        **{k: payload.get(k) for k in ("labels", "annotations", "startsAt", "endsAt")},
        "fingerprint": fingerprint,
        "value": payload.get("value"),
        "threshold": payload.get("threshold"),
        "condition": condition_of(payload),
    }
    for extra in ("links", "context"):
        if payload.get(extra):
            line[extra] = payload[extra]
    return line


class ConsoleNotifier:
    """Log each notification at WARNING (firing) or INFO (resolved)."""

    name = "console"
    groups = True
    resend_every: timedelta | None = None

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger

    async def send(self, delivery: Delivery) -> None:
        group = delivery.payload.get("groupKey")
        for one in alerts_of(delivery):
            self._line(one, group=group)

    def _line(self, delivery: Delivery, *, group: str | None) -> None:
        payload = delivery.payload
        line = console_line(payload, status=delivery.status, fingerprint=delivery.dedup_key)
        if group is not None:
            line["groupKey"] = group
        # The Watchdog (severity none) arrives every minute by design: not a warning.
        severity = payload["labels"].get("severity")
        firing = delivery.status == "firing" and severity != "none"
        level = logging.WARNING if firing else logging.INFO
        self._log.log(level, json.dumps(line, sort_keys=True))
