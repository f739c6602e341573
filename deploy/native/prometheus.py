"""A private Prometheus on a loopback port, with its own config and data directory.

For the benchmarks and the tests, which start one per run and remove it afterwards (the
native stack starts its own from ``launch``). Prometheus and promtool come from Debian's
``prometheus`` package (``make services`` installs it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from deploy.native.postgres import MissingBinary
from deploy.native.topology import free_port


def binary(name: str) -> str:
    """Path of a Prometheus-family binary (``prometheus``, ``promtool``, the Alertmanager)."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found is None:
        raise MissingBinary(
            f"{name} is not installed (run `make services`: Debian package prometheus)"
        )
    return found


@dataclass
class Prometheus:
    url: str
    directory: Path
    pid: int

    def query(self, expr: str) -> list[dict[str, object]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, object]] = response.json()["data"]["result"]
        return result


@contextlib.contextmanager
def running_prometheus(
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    evaluation_interval: str = "1s",
    scrape_configs: Sequence[Mapping[str, object]] = (),
    features: Sequence[str] = (),
) -> Iterator[Prometheus]:
    """Prometheus scraping ``{job: ["host:port", ...]}`` and any further ``scrape_configs``
    (as in ``prometheus.yml``), with ``features`` enabled (``exemplar-storage``: it then
    scrapes OpenMetrics and keeps exemplars); stopped and deleted afterwards."""
    executable = binary("prometheus")
    with tempfile.TemporaryDirectory(prefix="dynoscope-prometheus-") as name:
        directory = Path(name)
        config = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "evaluation_interval": evaluation_interval,
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in targets.items()
            ]
            + [dict(config) for config in scrape_configs],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        argv = [
            executable,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            *(f"--enable-feature={feature}" for feature in features),
        ]
        with ready_server("prometheus", argv, directory=directory, port=port) as (url, pid):
            yield Prometheus(url=url, directory=directory, pid=pid)


@contextlib.contextmanager
def ready_server(
    name: str, argv: Sequence[str], *, directory: Path, port: int
) -> Iterator[tuple[str, int]]:
    """Run a Prometheus-family server (``/-/ready``) on ``port``, its log in ``directory``;
    yield its URL and pid once ready, and stop it afterwards."""
    log_path = directory / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(name, url, process, log_path)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} at {url} not ready within 20 s")
