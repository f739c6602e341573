"""Slack through an incoming webhook: a ``text`` line (notifications, old clients) and blocks.

    {"text": "[FIRING] ApiLatencyP95High: p95 0.8s on /properties",
     "blocks": [{"type": "header", ...}, {"type": "section", ...}, {"type": "context", ...}]}

A group's message (``alerts.grouping``) is one Slack message: a header counting its alerts,
then each alert's own blocks (at most ``LISTED`` alerts; a last line counts the rest, as
Slack takes 50 blocks at most). A group of one alert reads like a single alert.

Slack answers 429 with ``Retry-After`` when it rate-limits: retried no sooner than that.
Other 4xx (``invalid_payload``, a revoked webhook) are not retried. The webhook URL is the
secret: give it as ``url_env`` in the receivers file.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from alerts.delivery import Delivery, alerts_of
from alerts.notifiers.http import post_json
from alerts.notifiers.webhook import _redact_in_httpx_log

HEADER_LIMIT = 150
LISTED = 10


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


def slack_payload(delivery: Delivery) -> dict[str, Any]:
    """The message for one delivery."""
    payload = delivery.payload
    labels: dict[str, str] = payload["labels"]
    name = labels.get("alertname", "alert")
    status = delivery.status.upper()
    summary = summary_of(payload)
    others = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    since = payload.get("startsAt") or "?"
    context = f"{others or 'no labels'} · since {since} · dedup key `{delivery.dedup_key}`"
    if delivery.status == "resolved" and payload.get("endsAt"):
        context += f" · resolved {payload['endsAt']}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{status}: {name}"[:HEADER_LIMIT]},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    links = []
    runbook = (payload.get("annotations") or {}).get("runbook_url")
    if runbook:
        links.append(f"<{runbook}|Runbook>")
    grafana = (payload.get("links") or {}).get("grafana")
    if grafana:
        links.append(f"<{grafana}|Dashboard>")
    if links:
        text = " · ".join(links)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return {"text": f"[{status}] {name}: {summary}", "blocks": blocks}


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
