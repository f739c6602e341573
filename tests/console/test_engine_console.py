"""The console beside an engine that runs alone: ``dynoscope alerts run`` with ``ADMIN_TOKEN``
and ``CONSOLE_PORT`` serves it, its pages reading that engine (Watchdog firing from memory,
the scorecard from Prometheus), and it stops with the engine on SIGTERM; a taken port is a
one-line refusal at start."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.async_api import Browser, expect

from tests.alerts.processes import engines, logs
from tests.console.conftest import RULES
from tests.console.test_console import csp_watch, sign_in
from tests.support.prometheus import running_prometheus
from tests.support.stack import free_port

TOKEN = "engine-console-token-" + "e" * 12


def _environ(tmp_path: Path, prometheus: str, port: int) -> dict[str, str]:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)  # evaluated every second
    ours = ("DYNOSCOPE", "DATABASE", "REDIS", "PROMETHEUS", "ALERT", "ADMIN", "METRICS", "CONSOLE")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return {
        **environ,
        "DYNOSCOPE_ENV": "test",
        "PROMETHEUS_URL": prometheus,
        "ALERT_STORE_URL": f"sqlite:///{tmp_path}/alerts.db",
        "ALERT_LEASE_SECONDS": "0",
        "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
        "ADMIN_TOKEN": TOKEN,
        "CONSOLE_PORT": str(port),
        "ALERT_RULES_PATH": str(rules),
    }


async def _until_up(url: str, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, logs(directory)
            try:
                if (await client.get(f"{url}/console/login")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"no console within 60 s:\n{logs(directory)}")


async def test_alerts_run_serves_the_console_of_its_engine(
    browser: Browser, tmp_path: Path
) -> None:
    port = free_port()
    silent = f"127.0.0.1:{free_port()}"  # a target nobody serves: Prometheus answers, no data
    with running_prometheus({"api": [silent]}) as prometheus:
        environ = _environ(tmp_path, prometheus.url, port)
        with engines(1, environ, tmp_path) as (engine,):
            base = f"http://127.0.0.1:{port}"
            await _until_up(base, engine, tmp_path)
            page = await browser.new_page()
            violations = csp_watch(page)
            await sign_in(page, base, TOKEN)
            await expect(page.get_by_text(re.compile("from Prometheus"))).to_be_visible()
            await page.get_by_role("link", name="Alerts", exact=True).click()
            watchdog = page.get_by_role("row", name=re.compile("Watchdog firing"))
            await expect(watchdog).to_be_visible()
            assert violations == [], violations
            await page.close()
        assert engine.returncode == 0, logs(tmp_path)  # SIGTERM: the engine and its console


def test_a_taken_console_port_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ = _environ(tmp_path, "http://127.0.0.1:9", port)
        done = subprocess.run(
            [sys.executable, "-m", "dynoscope", "alerts", "run"],
            env=environ, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("dynoscope alerts run: ") and "Traceback" not in done.stderr
    assert str(port) in done.stderr
