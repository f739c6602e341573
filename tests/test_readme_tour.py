"""The README as a newcomer reads it: every shell block is run by a test, and the five-minute
tour runs as written against ``make run`` (only the port, and the database and ``var/``
folder of this run, replaced by private ones).

Also what a first start must show: ``make run`` prints no warning of ours, its first
``serving`` line says database, cache, mode and where to look, and a cold start under the
tour's light traffic raises no cache alert.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ADDRESS = "http://127.0.0.1:8000"

# Which test runs the shell blocks under each of the README's sections.
RUN_BY = {
    "Quick start": "this file (`make run`) and CI (`make test`, .ci/run)",
    "A five-minute tour": "this file",
    "Production mode": "tests/test_readme_production.py",
}


def sections(text: str) -> dict[str, str]:
    """Each ``## `` section's body by its title."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def test_every_shell_block_of_the_readme_is_run_by_a_test() -> None:
    found = sections(README.read_text(encoding="utf-8"))
    unclaimed = [title for title, body in found.items() if shell_blocks(body)]
    unclaimed = [title for title in unclaimed if title not in RUN_BY]
    assert not unclaimed, f"README sections with commands no test runs: {unclaimed}"
    quick = shell_blocks(found["Quick start"])
    assert [line.split()[:2] for b in quick for line in b.splitlines()] == [
        ["make", "run"],
        ["make", "test"],
    ]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_wrapped() -> None:
    """Prose and code at most 100 characters a line (a Markdown table row cannot wrap)."""
    long = [
        number
        for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > 100 and not line.startswith("|")
    ]
    assert not long, f"README lines over 100 characters: {long}"


class MakeRun:
    """``make run`` in a session of its own, its output in a file."""

    def __init__(self, command: str, *, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.started = ""
        """What it printed up to serving (install, migrations, seed, start-up)."""
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            command, shell=True, cwd=ROOT, env=env, stdout=self._file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"make run exited:\n{self.text()[-3000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"make run did not serve within {seconds} s:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the whole session (make, serve), as Ctrl-C reaches both; then wait
        until every process of it is gone, not just make."""
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(group) and time.monotonic() < deadline:
            self.process.poll()
            time.sleep(0.1)
        if _alive(group):
            os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._file.close()


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return any(
        p.info["status"] != psutil.STATUS_ZOMBIE
        for p in psutil.process_iter(["status"])
        if _group_of(p.pid) == group
    )


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.fixture
def newcomer_environ(tmp_path: Path) -> dict[str, str]:
    """The environment of someone who has set nothing: no service URLs, tokens or mode of
    this suite's; only the database and ``var/`` of this run are private."""
    ours = ("DYNOSCOPE", "DATABASE", "REDIS", "PROMETHEUS", "ALERT", "ADMIN", "METRICS", "OTEL")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/dynoscope.db",
        DYNOSCOPE_TRACES_FILE=str(tmp_path / "var" / "traces.jsonl"),
    )
    return environ


@pytest.fixture
def make_run(newcomer_environ: dict[str, str], tmp_path: Path) -> Iterator[tuple[MakeRun, str]]:
    tour = sections(README.read_text(encoding="utf-8"))["A five-minute tour"]
    start, *_ = shell_blocks(tour)
    assert start.strip() == "DYNOSCOPE_FAULTS_ENABLED=true make run"
    port = free_port()
    running = MakeRun(f"{start.strip()} PORT={port}", env=newcomer_environ, log=tmp_path / "run")
    try:
        url = f"http://127.0.0.1:{port}"
        running.wait_ready(url)
        running.started = running.text()
        yield running, url
    finally:
        running.stop()
    assert not (tmp_path / "var" / "admin-token").exists()  # taken away at exit


def test_the_five_minute_tour_runs_as_written(
    make_run: tuple[MakeRun, str], newcomer_environ: dict[str, str], tmp_path: Path
) -> None:
    running, url = make_run
    _, *steps = shell_blocks(sections(README.read_text(encoding="utf-8"))["A five-minute tour"])
    assert len(steps) == 4
    script = "\n".join(f"echo; echo '=== step {n}'\n{step}" for n, step in enumerate(steps, 1))
    script = script.replace(ADDRESS, url).replace("var/admin-token", f"{tmp_path}/var/admin-token")
    assert "127.0.0.1:8000" not in script
    # `dynoscope fault` goes to http://127.0.0.1:8000 unless told otherwise: told here.
    environ = {**newcomer_environ, "DYNOSCOPE_URL": url}
    done = subprocess.run(
        ["sh", "-ec", script], cwd=ROOT, env=environ, capture_output=True,
        text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = dict(re.findall(r"=== step (\d)\n(.*?)(?=\n=== step |\Z)", done.stdout, re.DOTALL))

    created, listed = answers(out["1"])
    assert created["title"] == "Bright two-room flat" and created["status"] == "available"
    assert created["id"] in {item["id"] for item in listed["items"]}

    # Step 2: the slow write fired DatabaseSlowQuery, shown by /alerts (the last document).
    *_, slow_write, alerts = answers(out["2"])
    assert slow_write["title"] == "Quiet loft"
    firing = {a["alertname"]: a for a in alerts["alerts"] if a["state"] == "firing"}
    assert "DatabaseSlowQuery" in firing, alerts

    # Step 3: the trace of that write, its INSERT waiting over a second for the lock.
    assert "POST /properties" in out["3"]
    insert = re.search(r"INSERT properties\s+([\d.]+) ms", out["3"])
    assert insert is not None and float(insert.group(1)) > 1000, out["3"]

    # Step 4: the load's summary, then the scorecard from the engine's own window.
    assert "5 users for 10.0 s" in out["4"] and re.search(r"total\s+\d+", out["4"])
    assert "Scaling health over the last 15m" in out["4"]
    assert f"the engine of {url}" in out["4"] and "instances needed" in out["4"]

    # A cold cache under five users raised no cache alert.
    token = (tmp_path / "var" / "admin-token").read_text().strip()
    now = httpx.get(f"{url}/alerts", headers={"Authorization": f"Bearer {token}"}).json()
    assert not [a for a in now["alerts"] if a["alertname"] == "CacheHitRateLow"], now

    # What make run printed until it served: no warning (a switched fault and the alert it
    # fired are warnings later, on purpose), and a first line that says where to look.
    started = running.started
    assert "warning" not in started.lower(), started
    serving = next(line for line in started.splitlines() if " serving on " in line)
    for shown in ("database=sqlite", "cache=in-process", "mode=development", f"{url}/docs"):
        assert shown in serving, serving
    assert f"Bearer token in {tmp_path}/var/admin-token" in serving
    assert token not in running.text()


def answers(text: str) -> list[Any]:
    """The JSON objects printed among other lines (curl, json.tool, the fault switch)."""
    decoder, found, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        found.append(value)
        at = text.find("{", end)
    return found
