"""``dynoscope receivers test NAME`` sends a sample alert and reports the answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from starlette.responses import Response

from tests.alerts.receiving import recording_server


def run(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynoscope", "receivers", *args],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_receivers_test_reports_acceptance_and_refusal(
    tmp_path: Path, sqlite_environ: dict[str, str]
) -> None:
    path = tmp_path / "receivers.yml"
    path.write_text("receivers:\n  - name: oncall-slack\n    type: slack\n    url_env: SLACK_URL\n")
    async with recording_server() as server:
        secret = f"{server.base}/services/T0/B0/s3cr3t"
        environ = {**sqlite_environ, "ALERT_RECEIVERS_PATH": str(path), "SLACK_URL": secret}
        accepted = await _in_thread(environ, "test", "oncall-slack")
        assert accepted.returncode == 0, accepted.stderr
        assert "oncall-slack: accepted the sample alert DynoscopeReceiverTest" in accepted.stdout
        (body,) = server.bodies("/services/T0/B0/s3cr3t")
        assert body["text"].startswith("[FIRING] DynoscopeReceiverTest")
        server.answers.append(Response("invalid_token", status_code=403))
        refused = await _in_thread(environ, "test", "oncall-slack")
        unknown = await _in_thread(environ, "test", "nobody")
        listed = await _in_thread(environ, "list")
    assert refused.returncode == 1
    assert "oncall-slack: answered HTTP 403 (will not get better by retrying)" in refused.stderr
    assert unknown.returncode == 2 and "no receiver 'nobody'" in unknown.stderr
    assert listed.stdout.split("\n")[:2] == [
        "console (console: the engine's log, always)",
        "oncall-slack (slack)",
    ]
    for result in (accepted, refused, unknown, listed):
        assert "s3cr3t" not in result.stdout + result.stderr


async def _in_thread(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(run, environ, *args)
