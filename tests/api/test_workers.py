"""dynoscope serve --workers N: one metric directory for all workers, made and removed by serve
unless PROMETHEUS_MULTIPROC_DIR names one, and a refusal when it cannot be used."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.workers import MULTIPROC_ENV, WorkersError, metrics_directory
from exporters.tracefile import read_spans, trace_files
from tests.instrumentation.support import parse_text, sample_value
from tests.support.stack import free_port

DYNOSCOPE = [sys.executable, "-m", "dynoscope"]


def test_several_workers_get_a_private_directory_removed_at_exit() -> None:
    environ: dict[str, str] = {}
    with metrics_directory(workers=3, configured=None, environ=environ) as directory:
        assert directory is not None and environ[MULTIPROC_ENV] == directory
        assert list(Path(directory).iterdir()) == []  # created empty: nothing stale
        (Path(directory) / "counter_1.db").write_bytes(b"x")
    assert not Path(directory).exists()
    assert MULTIPROC_ENV not in environ


@pytest.mark.parametrize(
    ("workers", "enabled", "expected"), [(1, True, None), (2, False, None)], ids=["one", "off"]
)
def test_nothing_to_share_needs_no_directory(
    workers: int, enabled: bool, expected: str | None
) -> None:
    environ: dict[str, str] = {}
    with metrics_directory(
        workers=workers, configured=None, environ=environ, metrics_enabled=enabled
    ) as directory:
        assert directory is expected and environ == {}


def test_a_named_directory_is_used_and_left_in_place(tmp_path: Path) -> None:
    named = tmp_path / "prom"
    with metrics_directory(workers=2, configured=str(named), environ={}) as directory:
        assert directory == str(named) and named.is_dir()
    assert named.is_dir()


def test_a_directory_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with (
        pytest.raises(WorkersError, match=r"PROMETHEUS_MULTIPROC_DIR: .*a-file.* not a directory"),
        metrics_directory(workers=2, configured=str(blocker), environ={}),
    ):
        pass
    with (
        pytest.raises(WorkersError, match="--workers: must be at least 1"),
        metrics_directory(workers=0, configured=None, environ={}),
    ):
        pass


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    prefixes = ("DYNOSCOPE", "JWT", "REDIS", "OTEL", "PROMETHEUS", "METRICS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
            "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
            "LOG_LEVEL": "INFO",
        },
        **extra,
    )
    return env


def test_serve_refuses_a_directory_it_cannot_use(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = subprocess.run(
        [*DYNOSCOPE, "serve", "--workers", "2", "--port", str(free_port())],
        env=_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(blocker)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to start: PROMETHEUS_MULTIPROC_DIR:" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_metrics_port_it_cannot_listen_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*DYNOSCOPE, "serve", "--workers", "2", "--port", str(free_port())],
            env=_env(tmp_path, METRICS_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"refusing to start: METRICS_PORT: cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("own_port", [False, True], ids=["api-port", "metrics-port"])
def test_two_workers_without_a_variable_are_one_instance_and_one_writer_per_trace_file(
    tmp_path: Path, own_port: bool
) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    port = free_port()
    log = tmp_path / "serve.log"
    env = _env(tmp_path, OTEL_TRACES_SAMPLER="always_on")
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    if own_port:  # every worker listens on it too (SO_REUSEPORT); any one answers for all
        metrics_port = free_port()
        env["METRICS_PORT"] = str(metrics_port)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*DYNOSCOPE, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_for_workers(url, server, log, workers=2)
            for _ in range(40):
                with httpx.Client(base_url=url) as fresh:  # a new connection: any worker
                    assert fresh.get("/readyz").status_code == 200
            counts = []
            for _ in range(20):
                with httpx.Client() as fresh:
                    families = parse_text(fresh.get(metrics_url).text)
                counts.append(
                    sample_value(
                        families, "http_server_request_duration_seconds_count", route="/readyz"
                    )
                )
        finally:
            server.send_signal(signal.SIGTERM)
            returncode = server.wait(timeout=30)
    text = log.read_text()
    assert counts == [40.0] * 20, counts  # whichever worker answers, all 40 are there
    assert returncode == 0, text
    match = re.search(r"metrics of all workers are aggregated in (\S+)", text)
    assert match, text
    assert not Path(match.group(1)).exists()  # removed at exit
    spans = [s for s in read_spans(tmp_path / "traces.jsonl") if s.name == "GET /readyz"]
    assert len(spans) == 40
    files = [f.name for f in trace_files(tmp_path / "traces.jsonl")]
    assert set(files) <= {"traces.jsonl", "traces-1.jsonl"}, files


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DYNOSCOPE, *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_for_workers(
    url: str, server: subprocess.Popen[bytes], log: Path, *, workers: int
) -> None:
    deadline = time.monotonic() + 40
    while log.read_text().count("Application startup complete") < workers:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
