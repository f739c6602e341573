"""A private Alertmanager on a loopback port (Debian's ``prometheus-alertmanager``), with its
own config and data dir, clustering off; stopped and deleted afterwards."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.prometheus import binary
from tests.support.stack import free_port

CONFIG = {"route": {"receiver": "nowhere"}, "receivers": [{"name": "nowhere"}]}


@dataclass
class Alertmanager:
    url: str
    directory: Path

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the active (not yet ended) alerts."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found


@contextlib.contextmanager
def running_alertmanager() -> Iterator[Alertmanager]:
    executable = binary("prometheus-alertmanager")
    with tempfile.TemporaryDirectory(prefix="dynoscope-alertmanager-") as name:
        directory = Path(name)
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(CONFIG))
        port = free_port()
        log = (directory / "alertmanager.log").open("wb")
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={directory / 'alertmanager.yml'}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, directory)
            yield Alertmanager(url=url, directory=directory)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (directory / "alertmanager.log").read_text(errors="replace")
            raise RuntimeError(f"alertmanager exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"alertmanager at {url} not ready within 20 s")
