"""A generic webhook in Alertmanager's webhook format (version 4).

Any receiver written for Alertmanager accepts these requests. One request carries one
aggregation group's message (``alerts.delivery.grouping``): ``groupKey`` is the group's key,
the dedup key across retries, ``groupLabels`` its ``group_by`` labels, ``commonLabels`` and
``commonAnnotations`` what all its alerts share, and ``status`` is ``firing`` while any of them
fires. A delivery of a single alert (not grouped) has its fingerprint as ``groupKey``::

    {"version": "4", "groupKey": "<fingerprint>", "truncatedAlerts": 0, "status": "firing",
     "receiver": "webhook", "groupLabels": {"alertname": "..."}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": "...", "alerts": [{"status": "firing",
     "labels": {...}, "annotations": {...}, "startsAt": "...", "endsAt": "0001-01-01T00:00:00Z",
     "generatorURL": "", "fingerprint": "..."}]}

The URL is a secret (tokens live in webhook URLs): it is never logged or put in an error.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.notifiers.http import post_json

ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookConfig(BaseModel):
    """Where and how to post; ``url`` is secret (give it as ``url_env`` in a receivers file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["webhook"] = "webhook"
    name: str = "webhook"
    url: SecretStr
    timeout_seconds: float = 5.0
    external_url: str = ""


def v4_alert(payload: dict[str, Any], *, status: str, fingerprint: str) -> dict[str, Any]:
    """One alert object of a version-4 body. Besides the v4 fields it carries ``value``,
    ``threshold``, ``op``, ``links`` and ``context`` (example traces, slowest statements):
    receivers that only know v4 ignore fields they do not read."""
    alert: dict[str, Any] = {
        "status": status,
        "labels": payload["labels"],
        "annotations": payload["annotations"],
        "startsAt": payload["startsAt"],
        "endsAt": payload["endsAt"] or ZERO_TIME,
        "generatorURL": (payload.get("links") or {}).get("grafana", ""),
        "fingerprint": fingerprint,
        "value": payload.get("value"),
        "threshold": payload.get("threshold"),
        "op": payload.get("op"),
    }
    for extra in ("links", "context"):
        if payload.get(extra):
            alert[extra] = payload[extra]
    return alert


def alertmanager_payload(delivery: Delivery, *, receiver: str, external_url: str) -> dict[str, Any]:
    """The version-4 webhook body for one delivery (one group's message, or one alert)."""
    alerts = [webhook_alert(one) for one in alerts_of(delivery)]
    first: dict[str, str] = alerts[0]["labels"] if alerts else {}
    group = delivery.payload.get("groupLabels")
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": delivery.dedup_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": group if group is not None else {"alertname": first.get("alertname", "")},
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


def webhook_alert(delivery: Delivery) -> dict[str, Any]:
    """One alert of a webhook body."""
    return v4_alert(delivery.payload, status=delivery.status, fingerprint=delivery.dedup_key)


def _common(mappings: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every mapping has (Alertmanager's ``commonLabels``)."""
    if not mappings:
        return {}
    shared = set(mappings[0].items()).intersection(*(m.items() for m in mappings[1:]))
    return dict(sorted(shared))


class RedactUrl(logging.Filter):
    """Replace a secret URL in log records' arguments (httpx logs each request's URL)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(self.secret in str(a) for a in record.args):
            record.args = tuple(
                "<webhook url>" if self.secret in str(arg) else arg for arg in record.args
            )
        return True


def _redact_in_httpx_log(secret: str) -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactUrl) and f.secret == secret for f in logger.filters):
        logger.addFilter(RedactUrl(secret))


class WebhookNotifier:
    """POST each notification; the HTTP client is handed in (tests give a MockTransport)."""

    groups = True
    resend_every: timedelta | None = None

    def __init__(self, config: WebhookConfig, *, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        _redact_in_httpx_log(config.url.get_secret_value())

    async def send(self, delivery: Delivery) -> None:
        body = alertmanager_payload(
            delivery, receiver=self.name, external_url=self._config.external_url
        )
        await post_json(
            self._client,
            self._config.url.get_secret_value(),
            body,
            receiver=self.name,
            seconds=self._config.timeout_seconds,
        )
