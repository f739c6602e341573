"""Slack through an incoming webhook: a ``text`` line (notifications, old clients) and blocks.

    {"text": "[FIRING] ApiLatencyP95High: p95 0.8s on /properties",
     "blocks": [{"type": "header", ...}, {"type": "section", ...}, {"type": "context", ...}]}

Slack answers 429 with ``Retry-After`` when it rate-limits: retried no sooner than that.
Other 4xx (``invalid_payload``, a revoked webhook) are not retried. The webhook URL is the
secret: give it as ``url_env`` in the receivers file.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from alerts.delivery import Delivery
from alerts.notifiers.http import post_json
from alerts.notifiers.webhook import _redact_in_httpx_log

HEADER_LIMIT = 150


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


class SlackNotifier:
    """POST each notification to the incoming webhook."""

    def __init__(self, config: SlackConfig, *, client: httpx.AsyncClient) -> None:
        self.name = config.name
        self._config = config
        self._client = client
        _redact_in_httpx_log(config.url.get_secret_value())

    async def send(self, delivery: Delivery) -> None:
        await post_json(
            self._client,
            self._config.url.get_secret_value(),
            slack_payload(delivery),
            receiver=self.name,
            seconds=self._config.timeout_seconds,
        )
