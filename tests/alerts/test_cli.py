"""``dynoscope alerts run`` on its own: evaluates, notifies on the console, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_alerts_run_evaluates_until_terminated(
    tmp_path: Path, sqlite_environ: dict[str, str]
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    log = tmp_path / "out.log"
    environ = {
        **os.environ,
        **sqlite_environ,
        "LOG_LEVEL": "INFO",
        "ALERT_RULES_PATH": str(rules),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "alerts", "run"],
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
    assert "source local" in text
    assert "Running job" not in text  # APScheduler's per-run chatter is kept out of INFO
    alert = next(line for line in text.splitlines() if '"event": "alert"' in line)
    line = json.loads(alert[alert.index("{") :])
    assert line["alertname"] == "Watchdog" and line["labels"]["severity"] == "none"
