"""The dashboards we ship, rendered to the JSON files checked in under ``dashboards/json``.

>>> sorted(DASHBOARDS)
['alert-engine', 'scaling-health']
>>> rendered = render(DASHBOARDS["scaling-health"])
>>> rendered["uid"], rendered["schemaVersion"] >= 39
('dynoscope-scaling-health', True)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.engine import alert_engine
from dashboards.errors import StaleDashboards
from dashboards.scaling import scaling_health

DIRECTORY = Path(__file__).parent / "json"
DASHBOARDS: Mapping[str, Callable[[], Dashboard]] = {
    "scaling-health": scaling_health,
    "alert-engine": alert_engine,
}


def render(build: Callable[[], Dashboard]) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, panels numbered in order (stable ids)."""
    model: dict[str, Any] = json.loads(JSONEncoder().encode(build().build()))
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    return model


def text(model: Mapping[str, Any]) -> str:
    """Stable JSON text: sorted keys, two-space indent, final newline."""
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def expected(directory: Path = DIRECTORY) -> dict[Path, str]:
    """Each dashboard's file and the text it should hold."""
    return {directory / f"{name}.json": text(render(build)) for name, build in DASHBOARDS.items()}


def write(directory: Path = DIRECTORY) -> list[Path]:
    """Write every dashboard; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = expected(directory)
    for path, content in files.items():
        path.write_text(content, encoding="utf-8")
    return list(files)


def check(directory: Path = DIRECTORY) -> None:
    """Raise ``StaleDashboards`` naming every file that is missing or differs."""
    stale = [
        path
        for path, content in expected(directory).items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]
    if stale:
        raise StaleDashboards(stale)
