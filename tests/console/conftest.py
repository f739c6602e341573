"""A real Chromium (Debian's, installed by `make services`) driven by Playwright, and an API
serving the console as `make run` does: the embedded engine, test-size rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import browser

__all__ = ["browser"]

TOKEN = "console-admin-token-" + "c" * 12

# ApiLatencyP95High at test size (a 20 s window, no `for`, evaluated every second) and the
# dead man's switch, with the shipped messages.
RULES = """
groups:
  - name: console
    interval: 1s
    rules:
      - alert: ApiLatencyP95High
        signal: http_latency_p95_seconds
        by: [route]
        window: 20s
        op: ">"
        threshold: 0.5
        labels: {severity: page}
        annotations:
          runbook_url: "docs/runbook.md#apilatencyp95high"
          summary: "p95 {{ value | fixed(3) }}s on {{ labels.route }} (page above 0.5 s)"
      - alert: Watchdog
        signal: heartbeat
        window: 1m
        op: "=="
        threshold: 1
        labels: {severity: none}
        annotations:
          summary: "Always firing: if this stops arriving, the alerting pipeline is broken."
"""


@pytest.fixture
def console_environ(sqlite_environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    return {
        **sqlite_environ,
        "ADMIN_TOKEN": TOKEN,
        "DYNOSCOPE_FAULTS_ENABLED": "true",
        "ALERT_RULES_PATH": str(rules),
        "OTEL_TRACES_SAMPLER": "always_on",
    }
