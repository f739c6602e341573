"""``dynoscope alerts run`` on its own: refuses to run blind; against Prometheus it evaluates,
notifies on the console and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.prometheus import running_prometheus

RULES = """\
groups:
  - name: fast
    interval: 1s
    rules:
      - alert: Watchdog
        signal: heartbeat
        window: 1m
        op: "=="
        threshold: 1
        labels: {severity: none}
"""


def test_alerts_run_without_prometheus_refuses_and_says_what_to_set(
    tmp_path: Path, sqlite_environ: dict[str, str]
) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "dynoscope", "alerts", "run"],
        env={**environ, **sqlite_environ, "LOG_LEVEL": "INFO"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PROMETHEUS_URL is not set" in result.stderr
    assert "PROMETHEUS_URL=http://" in result.stderr
    assert "source local" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_alerts_run_evaluates_until_terminated(
    tmp_path: Path, sqlite_environ: dict[str, str]
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    log = tmp_path / "out.log"
    with running_prometheus({}) as prometheus, log.open("wb") as output:
        environ = {
            **os.environ,
            **sqlite_environ,
            "LOG_LEVEL": "INFO",
            "ALERT_RULES_PATH": str(rules),
            "PROMETHEUS_URL": prometheus.url,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "dynoscope", "alerts", "run"],
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while '"status": "firing"' not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=10)
    text = log.read_text()
    assert returncode == 0, text
    assert "source prometheus" in text
    assert "Running job" not in text  # APScheduler's per-run chatter is kept out of INFO
    alert = next(line for line in text.splitlines() if '"event": "alert"' in line)
    line = json.loads(alert[alert.index("{") :])
    assert line["alertname"] == "Watchdog" and line["labels"]["severity"] == "none"
