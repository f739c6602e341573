"""A private Alertmanager on a loopback port (Debian's ``prometheus-alertmanager``), with its
own config and data dir, clustering off; stopped and deleted afterwards."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.prometheus import binary, ready_server
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
        argv = [
            executable,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        with ready_server("alertmanager", argv, directory=directory, port=port) as (url, _):
            yield Alertmanager(url=url, directory=directory)
