"""Links per alert, rendered when it is queued: runbook, Grafana dashboard, example traces.

    >>> links = Links(trace="http://jaeger:16686/trace/{{ trace_id }}")
    >>> links.render({"labels": {}, "annotations": {"runbook_url": "https://wiki/r#a"},
    ...               "value": 1.0, "context": {"trace_ids": ["4bf9"]}})
    {'runbook': 'https://wiki/r#a', 'traces': {'4bf9': 'http://jaeger:16686/trace/4bf9'}}

A relative ``runbook_url`` annotation (``docs/runbook.md#instancedown``, as the shipped rules
have) is resolved against ``runbook_base`` (``ALERT_RUNBOOK_BASE_URL``) when that is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from alerts.rules.template import render


@dataclass(frozen=True)
class Links:
    """The link templates of a deployment; each is optional."""

    grafana: str | None = None
    trace: str | None = None
    runbook_base: str | None = None

    def render(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload["links"]`` for one notification payload (empty when nothing applies)."""
        labels: dict[str, str] = payload["labels"]
        raw = payload.get("value")
        value = float(raw) if isinstance(raw, int | float) else math.nan
        links: dict[str, Any] = {}
        runbook = (payload.get("annotations") or {}).get("runbook_url")
        if runbook:
            links["runbook"] = self.runbook(runbook)
        if self.grafana is not None:
            links["grafana"] = render(self.grafana, labels=labels, value=value)
        trace_ids = (payload.get("context") or {}).get("trace_ids") or []
        if self.trace is not None and trace_ids:
            links["traces"] = {
                trace_id: render(self.trace, labels=labels, value=value, trace_id=trace_id)
                for trace_id in trace_ids
            }
        return links

    def runbook(self, url: str) -> str:
        """``url`` made absolute against ``runbook_base`` if it is relative and a base is set."""
        if self.runbook_base is None or "://" in url:
            return url
        return urljoin(self.runbook_base.rstrip("/") + "/", url)
