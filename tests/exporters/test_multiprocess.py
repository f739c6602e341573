"""Two worker processes behind one port, one scrape: aggregated counts and instance memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.instrumentation.support import parse_text, sample_value
from tests.support.stack import free_port


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    multiproc = tmp_path / "prom"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "OTEL", "PROM"))}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "OTEL_SDK_DISABLED": "true",
            "ALERT_STORE_URL": f"sqlite:///{tmp_path}/alerts.db",
            "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
            "INSTANCE_ID": "api-mp",
            "LOG_LEVEL": "WARNING",
        }
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.asgi:create",
            "--factory",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (
                    httpx.get(f"{url}/healthz", timeout=1).status_code == 200
                    and len(list(multiproc.glob("gauge_livesum_*.db"))) >= 2
                ):
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "two workers did not come up in 30 s"
            time.sleep(0.1)
        yield url, multiproc
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()


def test_two_workers_are_scraped_as_one_instance(
    two_workers: tuple[str, Path],
) -> None:
    url, multiproc = two_workers
    with httpx.Client(base_url=url) as client:
        # New connections spread over the workers; each request on its own connection.
        for _ in range(60):
            with httpx.Client(base_url=url) as fresh:
                assert fresh.get("/readyz").status_code == 200
        text = client.get("/metrics").text
    families = parse_text(text)
    served = sample_value(families, "http_server_request_duration_seconds_count", route="/readyz")
    assert served == 60  # every request, whichever worker took it

    pids = {int(p.stem.rsplit("_", 1)[1]) for p in multiproc.glob("gauge_livesum_*.db")}
    workers = [psutil.Process(pid) for pid in pids]
    assert len(workers) == 2
    worker_rss = [w.memory_info().rss for w in workers]
    memory = sample_value(families, "process_resident_memory_bytes")
    # One series for the instance, summing both workers (not one worker picked at random).
    assert len(families["process_resident_memory_bytes"].samples) == 1
    assert memory > 1.5 * max(worker_rss)
    assert memory < 1.5 * sum(worker_rss)
    assert sample_value(families, "process_cpu_seconds_total") > 0
    assert (
        sample_value(families, "process_start_time_seconds")
        >= min(w.create_time() for w in workers) - 1
    )
    info = families["dynoscope_instance_info"].samples
    assert [(s.labels["instance_id"], s.value) for s in info] == [("api-mp", 1.0)]
