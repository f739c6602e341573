"""Slack through an incoming webhook: a ``text`` line (notifications, old clients) and blocks.

    {"text": "[FIRING] ApiLatencyP95High: p95 0.8s on /properties",
     "blocks": [{"type": "header", ...}, {"type": "section", ...}, {"type": "context", ...}]}

A group's message (``alerts.delivery.grouping``) is one Slack message: a header counting its alerts,
then each alert's own blocks (at most ``LISTED`` alerts; a last line counts the rest, as
Slack takes 50 blocks at most). A group of one alert reads like a single alert.

Slack answers 429 with ``Retry-After`` when it rate-limits: retried no sooner than that.
Other 4xx (``invalid_payload``, a revoked webhook) are not retried. The webhook URL is the
secret: give it as ``url_env`` in the receivers file.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.notifiers.fields import condition_of, query_lines, trace_links, where_of
from alerts.delivery.notifiers.http import post_json
from alerts.delivery.notifiers.webhook import _redact_in_httpx_log

HEADER_LIMIT = 150
TEXT_LIMIT = 3000  # Slack's limit for a section's text
# An alert takes up to 7 blocks in a group's message (divider, summary, fields, context,
# links, traces, statements); 6 of them with the header lines stay under Slack's 50.
LISTED = 6


class SlackConfig(BaseModel):
    """An incoming webhook; ``url`` is secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["slack"] = "slack"
    name: str = "slack"
    url: SecretStr
    timeout_seconds: float = 5.0


def summary_of(payload: dict[str, Any]) -> str:
    annotations: dict[str, str] = payload.get("annotations") or {}
    name = payload["labels"].get("alertname", "alert")
    return annotations.get("summary") or annotations.get("description") or name


def alert_text(payload: dict[str, Any], *, status: str) -> str:
    """The one-line notification text for one alert, e.g. ``[FIRING] Name: summary``."""
    name = payload["labels"].get("alertname", "alert")
    return f"[{status.upper()}] {name}: {summary_of(payload)}"


def alert_blocks(payload: dict[str, Any], *, status: str, dedup_key: str) -> list[dict[str, Any]]:
    """The blocks for one alert: header, summary, fields (value vs threshold, since, where),
    context line, links, example traces (as links) and slowest statements (as code)."""
    labels: dict[str, str] = payload["labels"]
    name = labels.get("alertname", "alert")
    others = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    context = f"{others or 'no labels'} · dedup key `{dedup_key}`"
    if status == "resolved" and payload.get("endsAt"):
        context += f" · resolved {payload['endsAt']}"
    fields = [
        {"type": "mrkdwn", "text": f"*Value*\n{condition_of(payload)}"},
        {"type": "mrkdwn", "text": f"*Since*\n{payload.get('startsAt') or '?'}"},
    ]
    where = where_of(labels)
    if where:
        fields.append({"type": "mrkdwn", "text": f"*Where*\n{where}"})
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{status.upper()}: {name}"[:HEADER_LIMIT]},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": summary_of(payload)}},
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    return blocks + _link_blocks(payload)


def _link_blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    links: dict[str, Any] = payload.get("links") or {}
    blocks: list[dict[str, Any]] = []
    named = [
        f"<{url}|{text}>"
        for url, text in (
            (
                links.get("runbook") or (payload.get("annotations") or {}).get("runbook_url"),
                "Runbook",
            ),
            (links.get("grafana"), "Dashboard"),
        )
        if url
    ]
    if named:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": " · ".join(named)}})
    traces = [f"<{url}|{tid}>" if url else f"`{tid}`" for tid, url in trace_links(payload)]
    if traces:
        text = "*Example slow traces*\n" + "\n".join(traces)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:TEXT_LIMIT]}})
    queries = query_lines(payload)
    if queries:
        text = "*Slowest statements*\n```" + "\n".join(queries) + "```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:TEXT_LIMIT]}})
    return blocks


def slack_payload(delivery: Delivery) -> dict[str, Any]:
    """The message for one delivery."""
    payload = delivery.payload
    return {
        "text": alert_text(payload, status=delivery.status),
        "blocks": alert_blocks(payload, status=delivery.status, dedup_key=delivery.dedup_key),
    }


def group_message(delivery: Delivery) -> dict[str, Any]:
    """The message for one delivery: one alert's, or one group's listing its alerts."""
    alerts = alerts_of(delivery)
    if len(alerts) == 1:
        return slack_payload(alerts[0])
    status = delivery.status.upper()
    firing = sum(one.status == "firing" for one in alerts)
    group = delivery.payload.get("groupLabels") or {}
    about = ", ".join(f"{k}={v}" for k, v in sorted(group.items())) or "alerts"
    counts = f"{firing} firing, {len(alerts) - firing} resolved"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{status}: {about}"[:HEADER_LIMIT]},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": counts}]},
    ]
    for one in alerts[:LISTED]:
        blocks.extend([{"type": "divider"}, *slack_payload(one)["blocks"][1:]])
    if len(alerts) > LISTED:
        more = f"and {len(alerts) - LISTED} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": f"[{status}] {about}: {counts}", "blocks": blocks}


class SlackNotifier:
    """POST each notification (one alert, or one group's message) to the incoming webhook."""

    groups = True
    resend_every: timedelta | None = None

    def __init__(self, config: SlackConfig, *, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        _redact_in_httpx_log(config.url.get_secret_value())

    async def send(self, delivery: Delivery) -> None:
        await post_json(
            self._client,
            self._config.url.get_secret_value(),
            group_message(delivery),
            receiver=self.name,
            seconds=self._config.timeout_seconds,
        )
