"""PagerDuty Events API v2: ``trigger`` when an alert fires, ``resolve`` when it resolves.

``dedup_key`` is the alert's fingerprint, so PagerDuty folds retries and repeats into one
alert and the resolve closes it. The ``severity`` label maps onto PagerDuty's four severities
(``page`` → ``critical``). 429 and 5xx are retried; other 4xx (a bad routing key, an invalid
event) are not. The routing key is the secret: give it as ``routing_key_env``.

A group's message is still one event per alert (the Events API pairs a trigger with its
resolve by ``dedup_key``, so it must be the alert's), posted one after the other at the
group's flush. A retry of the message posts them all again: PagerDuty folds the repeats.

    {"routing_key": "...", "event_action": "trigger", "dedup_key": "<fingerprint>",
     "payload": {"summary": "...", "source": "api-1:8000", "severity": "critical",
                 "timestamp": "...", "component": "/properties", "class": "ApiLatencyP95High",
                 "custom_details": {"labels": {...}, "annotations": {...}, "value": 0.8,
                                    "threshold": 0.5, "condition": "0.8 > 0.5", ...}},
     "links": [{"href": "https://.../runbook.md#apilatencyp95high", "text": "Runbook"}, ...]}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.notifiers.fields import condition_of, query_lines, trace_links, where_of
from alerts.delivery.notifiers.http import post_json
from alerts.delivery.notifiers.slack import summary_of

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {
    "page": "critical",
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "info": "info",
    "none": "info",
}
SUMMARY_LIMIT = 1024


class PagerDutyConfig(BaseModel):
    """An Events API v2 integration; ``routing_key`` is secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["pagerduty"] = "pagerduty"
    name: str = "pagerduty"
    routing_key: SecretStr
    url: str = EVENTS_URL
    source: str = "dynoscope"
    timeout_seconds: float = 5.0


def severity_of(labels: dict[str, str]) -> str:
    """PagerDuty's severity for an alert's ``severity`` label (``warning`` when unknown)."""
    return SEVERITIES.get(labels.get("severity", "").lower(), "warning")


def alert_details(payload: dict[str, Any]) -> dict[str, Any]:
    """``custom_details`` for one alert: the condition, since when, where, example traces and
    slowest statements besides labels and annotations."""
    labels: dict[str, str] = payload["labels"]
    details: dict[str, Any] = {
        "labels": labels,
        "annotations": payload.get("annotations") or {},
        "value": payload.get("value"),
        "threshold": payload.get("threshold"),
        "condition": condition_of(payload),
        "since": payload.get("startsAt"),
    }
    where = where_of(labels)
    if where:
        details["where"] = where
    traces = trace_links(payload)
    if traces:
        details["example_traces"] = [url or trace_id for trace_id, url in traces]
    queries = query_lines(payload)
    if queries:
        details["slowest_queries"] = queries
    return details


def alert_links(payload: dict[str, Any]) -> list[dict[str, str]]:
    """The Events API v2 ``links`` for one alert: runbook, dashboard, each example trace."""
    links: dict[str, Any] = payload.get("links") or {}
    runbook = links.get("runbook") or (payload.get("annotations") or {}).get("runbook_url")
    found = []
    if runbook:
        found.append({"href": runbook, "text": "Runbook"})
    if links.get("grafana"):
        found.append({"href": links["grafana"], "text": "Dashboard"})
    for trace_id, url in trace_links(payload):
        if url:
            found.append({"href": url, "text": f"Trace {trace_id}"})
    return found


def pagerduty_event(delivery: Delivery, *, routing_key: str, source: str) -> dict[str, Any]:
    """The event for one delivery."""
    if delivery.status == "resolved":
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": delivery.dedup_key,
        }
    payload = delivery.payload
    labels: dict[str, str] = payload["labels"]
    body: dict[str, Any] = {
        "summary": summary_of(payload)[:SUMMARY_LIMIT],
        "source": labels.get("instance") or source,
        "severity": severity_of(labels),
        "timestamp": payload.get("startsAt"),
        "class": labels.get("alertname", "alert"),
        "custom_details": alert_details(payload),
    }
    component = labels.get("route") or labels.get("job")
    if component:
        body["component"] = component
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": delivery.dedup_key,
        "client": "dynoscope",
        "payload": body,
    }
    links = alert_links(payload)
    if links:
        event["links"] = links
    return event


class PagerDutyNotifier:
    """Send each alert as one event (a group's alerts one after the other)."""

    groups = True
    resend_every: timedelta | None = None

    def __init__(self, config: PagerDutyConfig, *, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self._config = config
        self._client = client

    async def send(self, delivery: Delivery) -> None:
        for one in alerts_of(delivery):
            event = pagerduty_event(
                one,
                routing_key=self._config.routing_key.get_secret_value(),
                source=self._config.source,
            )
            await post_json(
                self._client,
                self._config.url,
                event,
                receiver=self.name,
                seconds=self._config.timeout_seconds,
            )
