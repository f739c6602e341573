"""Push alerts to an existing Alertmanager (``POST /api/v2/alerts``), which routes, groups,
silences and inhibits them from there.

A firing alert is sent with ``endsAt`` ``ends_after`` ahead (4 times ``resend_seconds``, as
Prometheus does): Alertmanager resolves an alert nobody refreshes, so the engine pushes every
firing alert again every ``resend_seconds`` (``Monitor`` schedules it) and a dead engine's
alerts end by themselves. A resolved alert is sent with its real ``endsAt``.

It is not grouped here (``groups = False``): every alert is pushed at once, without waiting
``group_wait``, because Alertmanager groups, waits and repeats by its own routes; waiting here
as well would only delay its first notification.

    [{"labels": {"alertname": "...", ...}, "annotations": {...},
      "startsAt": "2026-11-29T02:00:00Z", "endsAt": "2026-11-29T02:04:00Z"}]
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from alerts.delivery.notification import Delivery, alerts_of, iso
from alerts.delivery.notifiers.http import post_json


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlertmanagerConfig(BaseModel):
    """Alertmanager's base URL, e.g. ``http://alertmanager:9093``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["alertmanager"] = "alertmanager"
    name: str = "alertmanager"
    url: str = Field(pattern=r"^https?://")
    resend_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = 5.0

    @property
    def ends_after(self) -> timedelta:
        return timedelta(seconds=4 * self.resend_seconds)


def postable_alerts(delivery: Delivery, *, now: datetime, ends_after: timedelta) -> list[Any]:
    """The request body (a list of postable alerts, one per alert) for one delivery."""
    return [postable_alert(one, now=now, ends_after=ends_after) for one in alerts_of(delivery)]


def postable_alert(delivery: Delivery, *, now: datetime, ends_after: timedelta) -> Any:
    """One alert as Alertmanager's ``postableAlert``."""
    payload = delivery.payload
    alert: dict[str, Any] = {
        "labels": dict(payload["labels"]),
        "annotations": dict(payload.get("annotations") or {}),
        "startsAt": payload.get("startsAt"),
    }
    links = payload.get("links") or {}
    if links.get("grafana"):
        alert["generatorURL"] = links["grafana"]
    if links.get("runbook"):
        # Made absolute against ALERT_RUNBOOK_BASE_URL: Alertmanager's templates link it as is.
        alert["annotations"]["runbook_url"] = links["runbook"]
    if delivery.status == "resolved":
        alert["endsAt"] = payload.get("endsAt") or iso(now)
    else:
        alert["endsAt"] = iso(now + ends_after)
    return alert


class AlertmanagerNotifier:
    """POST each notification to ``/api/v2/alerts``."""

    groups = False

    def __init__(
        self,
        config: AlertmanagerConfig,
        *,
        client: httpx.AsyncClient,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.name = config.name
        self.resend_every: timedelta | None = timedelta(seconds=config.resend_seconds)
        self._config = config
        self._client = client
        self._clock = clock

    async def send(self, delivery: Delivery) -> None:
        body = postable_alerts(delivery, now=self._clock(), ends_after=self._config.ends_after)
        await post_json(
            self._client,
            self._config.url.rstrip("/") + "/api/v2/alerts",
            body,
            receiver=self.name,
            seconds=self._config.timeout_seconds,
        )
