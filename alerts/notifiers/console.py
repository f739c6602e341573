"""Notifications as one structured (JSON) log line each: the embedded-mode default.

{"event": "alert", "status": "firing", "alertname": "DatabaseSlowQuery", "labels": {...},
 "annotations": {...}, "startsAt": "2026-11-26T09:00:00Z", "fingerprint": "..."}
"""

from __future__ import annotations

import json
import logging

from alerts.delivery import Delivery

log = logging.getLogger("dynoscope.alerts")


class ConsoleNotifier:
    """Log each notification at WARNING (firing) or INFO (resolved)."""

    name = "console"

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger

    async def send(self, delivery: Delivery) -> None:
        payload = delivery.payload
        line = {
            "event": "alert",
            "status": delivery.status,
            "alertname": payload["labels"].get("alertname"),
            **{k: payload.get(k) for k in ("labels", "annotations", "startsAt", "endsAt")},
            "fingerprint": delivery.dedup_key,
        }
        # The Watchdog (severity none) arrives every minute by design: not a warning.
        severity = payload["labels"].get("severity")
        firing = delivery.status == "firing" and severity != "none"
        level = logging.WARNING if firing else logging.INFO
        self._log.log(level, json.dumps(line, sort_keys=True))
