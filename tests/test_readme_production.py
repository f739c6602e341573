"""The README's production section, run as written.

Its three blocks (API, alert engine, Prometheus) are taken from README.md and run with only
addresses and databases replaced (``REPLACEMENTS``): the API block under ``sh`` (``dynoscope
db upgrade`` and ``dynoscope serve --workers 2``), Prometheus with the block's scrape
configuration, and the engine block (``dynoscope alerts run``). Then, with requests sent at a
steady pace on fresh connections (so both workers take them):

- 20 consecutive scrapes of ``/metrics`` never show a counter going down;
- Prometheus's ``rate()`` of the requests matches the rate sent, within 5 %;
- the engine's first evaluation cycle succeeds (its own metrics: evaluations, no failures).

``README_SHA256`` pins the blocks: edit the README and this test fails until it is reviewed
and the hash updated with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import yaml

from tests.conftest import run_blocking
from tests.instrumentation.support import parse_text
from tests.support.prometheus import running_prometheus
from tests.support.services import POSTGRES_ADMIN_DSN, REDIS_URL
from tests.support.stack import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
README_SHA256 = "70f598a42b7dce4723aff54c06d30af2a4aca4e8535ff4034d91059304ba1fb6"

API_DATABASE = "postgresql://app@db.internal:5432/listings"
ALERT_STORE = "postgresql://alerts@alerts-db.internal:5432/dynoscope_alerts"

RATE = 25.0  # requests a second, each on a new connection
SCRAPES = 20
REQUESTS_PER_SCRAPE = 20


def production_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced block in the "Production mode" section."""
    section = text[text.index("## Production mode") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def replaced(block: str, replacements: Mapping[str, str]) -> str:
    """``block`` with its addresses replaced; none of the README's hosts may be left over (a new
    one in the README needs a replacement here)."""
    for old, new in replacements.items():
        if old in block:
            block = block.replace(old, new)
    assert ".internal" not in block and "0.0.0.0" not in block, block
    return block


@pytest.fixture
def alert_store(run_id: str) -> Iterator[str]:
    """A PostgreSQL database of the engine's own for this test, dropped afterwards."""
    name = f"dynoscope_alerts_{run_id}_{uuid.uuid4().hex[:6]}"
    admin = f"{POSTGRES_ADMIN_DSN}/postgres"
    run_blocking(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_DSN}/{name}"
    finally:
        run_blocking(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _environ(tmp_path: Path) -> dict[str, str]:
    """A clean shell environment: the virtualenv's ``dynoscope`` first on PATH, the secret a
    deployment's secret store would provide, nothing of ours inherited."""
    ours = ("DYNOSCOPE", "JWT", "REDIS", "PROMETHEUS", "ALERT", "METRICS", "OTEL", "DATABASE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours) and k != "HOST"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["JWT_SECRET"] = "readme-production-" + "s" * 32
    env["LOG_LEVEL"] = "INFO"
    return env


class Shell:
    """One README block under ``sh -e`` in a session of its own (stopped as a group)."""

    def __init__(self, block: str, *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._output = log.open("wb")
        self.process = subprocess.Popen(
            ["sh", "-ec", block],
            cwd=cwd,
            env=env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM to the block's whole process group; SIGKILL to what still runs after 30 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        returncode = self.process.wait()
        self._output.close()
        return returncode


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies waiting to be reaped aside)."""
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _poll(check: Callable[[], bool], *, seconds: float, shell: Shell) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        assert shell.process.poll() is None, shell.text()
        assert time.monotonic() < deadline, shell.text()
        time.sleep(0.2)


def _counters(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter sample of a scrape (histogram buckets, counts and sums included)."""
    found = {}
    for family in parse_text(text).values():
        if family.type not in ("counter", "histogram"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_the_readme_production_section_runs_as_written(
    tmp_path: Path, clean_postgres: str, redis_prefix: str, alert_store: str
) -> None:
    blocks = production_blocks(README.read_text(encoding="utf-8"))
    digest = hashlib.sha256("\n".join(body for _, body in blocks).encode()).hexdigest()
    assert digest == README_SHA256, (
        "README's production blocks changed: check this test runs them as a user would, "
        f"then set README_SHA256 = {digest!r}"
    )
    assert [language for language, _ in blocks] == ["sh", "sh", "yaml"]
    api_block, engine_block, prometheus_block = (body for _, body in blocks)

    api_port, engine_port = free_port(), free_port()
    addresses = {
        API_DATABASE: clean_postgres,
        ALERT_STORE: alert_store,
        "redis://cache.internal:6379/0": REDIS_URL,
        "REDIS_KEY_PREFIX=listings:": f"REDIS_KEY_PREFIX={redis_prefix}",
        "--host 0.0.0.0 --port 8000": f"--host 127.0.0.1 --port {api_port}",
        "HOST=0.0.0.0 METRICS_PORT=9464": f"HOST=127.0.0.1 METRICS_PORT={engine_port}",
        "api.internal:8000": f"127.0.0.1:{api_port}",
        "alerts.internal:9464": f"127.0.0.1:{engine_port}",
    }
    env = _environ(tmp_path)
    api = Shell(replaced(api_block, addresses), cwd=tmp_path, env=env, log=tmp_path / "api.log")
    engine: Shell | None = None
    try:
        url = f"http://127.0.0.1:{api_port}"
        _poll(
            lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200, seconds=60, shell=api
        )
        scrape_configs = yaml.safe_load(replaced(prometheus_block, addresses))["scrape_configs"]
        with running_prometheus({}, scrape_configs=scrape_configs) as prometheus:
            addresses["http://prometheus.internal:9090"] = prometheus.url
            engine = Shell(
                replaced(engine_block, addresses),
                cwd=tmp_path,
                env=env,
                log=tmp_path / "engine.log",
            )
            sent, scrapes = _steady_traffic(url)
            # Prometheus's own scrape after the last request, then its view of the traffic.
            _poll(
                lambda: _value(prometheus.query('timestamp(up{job="api"})')) > sent[-1] + 1.5,
                seconds=10,
                shell=api,
            )
            at = sent[-1] - 1.0
            window = 10.0
            query = (
                'sum(rate(http_server_request_duration_seconds_count{job="api",'
                f'route="/properties"}}[{window:g}s]))'
            )
            response = httpx.get(
                f"{prometheus.url}/api/v1/query", params={"query": query, "time": at}, timeout=5
            )
            measured = _value(response.json()["data"]["result"])
            expected = sum(1 for t in sent if at - window < t <= at) / window
            resets = prometheus.query(
                'resets(http_server_request_duration_seconds_count{job="api"}[1m]) > 0'
            )
            evaluations = _first_cycle(f"http://127.0.0.1:{engine_port}/metrics", engine)
    finally:
        api_status = api.stop()
        engine_status = engine.stop() if engine is not None else None

    failures, total = evaluations
    # Shown with -s: the figures the README's production path gives on this machine.
    print(f"rate() {measured:.3f}/s, sent {expected:.3f}/s; first cycle: {total:g} evaluations")
    for before, after in itertools.pairwise(scrapes):
        went_down = {k: (before.get(k), v) for k, v in after.items() if v < before.get(k, 0.0)}
        assert not went_down, went_down
    assert len(scrapes) == SCRAPES
    assert abs(measured - expected) <= 0.05 * expected, (measured, expected)
    assert resets == [], resets
    assert total > 0 and failures == 0, evaluations
    assert "source prometheus" in (tmp_path / "engine.log").read_text()
    api_log = api.log.read_text()
    assert "metrics of all workers are aggregated in" in api_log
    assert "database=postgresql" in api_log and "mode=production" in api_log
    assert api_status == 0 or api_status == -signal.SIGTERM, api_log
    assert engine_status in (0, -signal.SIGTERM), (tmp_path / "engine.log").read_text()


def _steady_traffic(
    url: str,
) -> tuple[list[float], list[dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    """Requests at ``RATE`` a second (completion times), and a scrape every
    ``REQUESTS_PER_SCRAPE`` of them."""
    sent: list[float] = []
    scrapes = []
    start = time.monotonic()
    offset = time.time() - start
    for n in range(SCRAPES * REQUESTS_PER_SCRAPE):
        delay = start + n / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with httpx.Client(base_url=url, timeout=5) as fresh:
            assert fresh.get("/properties", params={"limit": 5}).status_code == 200
        sent.append(time.monotonic() + offset)
        if n % REQUESTS_PER_SCRAPE == REQUESTS_PER_SCRAPE - 1:
            with httpx.Client(base_url=url, timeout=5) as fresh:
                scrapes.append(_counters(fresh.get("/metrics").text))
    return sent, scrapes


def _first_cycle(metrics_url: str, engine: Shell) -> tuple[float, float]:
    """(failures, evaluations) once the engine has evaluated every rule at least once."""
    result: dict[str, float] = {}

    def evaluated() -> bool:
        families = parse_text(httpx.get(metrics_url, timeout=2).text)
        evaluations = families.get("dynoscope_rule_evaluations")
        failures = families.get("dynoscope_rule_evaluation_failures")
        if evaluations is None or not evaluations.samples:
            return False
        counts = [s.value for s in evaluations.samples if s.name.endswith("_total")]
        result["total"] = sum(counts)
        result["failures"] = sum(
            s.value for s in (failures.samples if failures else []) if s.name.endswith("_total")
        )
        return bool(counts) and min(counts) > 0

    _poll(evaluated, seconds=60, shell=engine)
    return result["failures"], result["total"]
