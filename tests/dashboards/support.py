"""Walking the generated dashboards: every query and every variable they hold."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards.catalogue import DASHBOARDS, render

VARIABLE = re.compile(r"\$(?:\{(\w+)[^}]*\}|(\w+))")
BUILTIN = frozenset({"__all", "__rate_interval", "__interval", "__range"})


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str


def models() -> dict[str, dict[str, Any]]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def panel_queries() -> Iterator[PanelQuery]:
    for name, model in models().items():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                yield PanelQuery(name, panel["title"], target["refId"], target["expr"])


def used_variables(model: dict[str, Any]) -> set[str]:
    """Every ``$name`` / ``${name}`` the model refers to, Grafana's built-ins left out."""
    text = json.dumps({k: v for k, v in model.items() if k != "templating"})
    text += json.dumps([v.get("query", "") for v in model["templating"]["list"]])
    text += json.dumps([v.get("datasource", {}) for v in model["templating"]["list"]])
    names = {a or b for a, b in VARIABLE.findall(text)}
    return names - BUILTIN


def resolved(expr: str, *, values: dict[str, str] | None = None) -> str:
    """``expr`` as Grafana sends it with every variable on All (``.*``)."""
    values = values or {}
    return VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), ".*"), expr)


def catalogue_names(doc: Path) -> set[str]:
    """Every series name docs/metrics.md promises (histograms with their three series), the
    standard process metrics it lists, and Prometheus's own ``up``."""
    names = {"up"}
    text = doc.read_text()
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        name, kind = cells[0].strip("`"), cells[1]
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    names |= set(re.findall(r"`(process_\w+)`", text))
    return names
