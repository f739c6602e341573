"""Service-level objectives, read from OpenSLO v1 ``SLO`` documents with a ratio indicator.

    slos = load_slos(["alerts/slo/default.yml"])   # SloFileError naming file, SLO and field
    slos[0].name, slos[0].target, slos[0].window    # "api-availability", 0.999, 30 days

The subset read (docs/slos.md): ``apiVersion: openslo/v1``, ``kind: SLO``, ``metadata.name``,
``spec.service``, ``spec.description``, an inline ``spec.indicator`` whose
``spec.ratioMetric`` has ``counter: true``, ``total`` and one of ``good`` or ``bad``, each a
``metricSource`` of type ``Prometheus`` with a ``query``; ``spec.timeWindow`` (one rolling
window, e.g. ``30d``); ``spec.budgetingMethod: Occurrences``; ``spec.objectives`` (one
``target``, 0 < target < 1). Queries are PromQL range expressions written with
``{{.window}}`` where the range goes, as Sloth writes them, and group by whatever labels the
SLO is per (``sum by (route) (...)``): each resulting series is judged on its own. Anything
else OpenSLO allows is refused with a message saying so, rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from alerts.errors import AlertsError, Problem
from alerts.rules.duration import parse_duration

WINDOW = "{{.window}}"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


class SloFileError(AlertsError):
    """SLO files rejected as a whole; ``problems`` lists every mistake found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p).replace(": rule ", ": SLO ") for p in self.problems))


@dataclass(frozen=True)
class Slo:
    """One objective: ``bad``/``total`` (or ``1 - good/total``) over ``window`` must stay
    under ``1 - target``."""

    name: str
    service: str
    description: str
    target: float
    window: timedelta
    total: str
    good: str | None = None
    bad: str | None = None

    @property
    def budget(self) -> float:
        """The error budget as a ratio (0.001 for 99.9 %)."""
        return 1.0 - self.target

    def error_ratio(self, window: str) -> str:
        """PromQL of the ratio of bad events over ``window`` (``5m``)."""
        total = self.total.replace(WINDOW, window)
        if self.bad is not None:
            return f"({self.bad.replace(WINDOW, window)}) / ({total})"
        assert self.good is not None
        return f"1 - (({self.good.replace(WINDOW, window)}) / ({total}))"


def load_slos(paths: Iterable[str | Path]) -> list[Slo]:
    """Every SLO in ``paths`` (files, each one or more YAML documents); ``SloFileError`` with
    every problem found, by file, SLO and field."""
    found: list[Slo] = []
    problems: list[Problem] = []
    for path in paths:
        file = str(path)
        try:
            documents = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            problems.append(Problem(file, f"cannot read: {exc.strerror}"))
            continue
        except yaml.YAMLError as exc:
            problems.append(Problem(file, f"not valid YAML: {exc}"))
            continue
        for number, document in enumerate(d for d in documents if d is not None):
            slo, errors = _slo(file, number, document)
            problems.extend(errors)
            if slo is not None:
                found.append(slo)
    names = [slo.name for slo in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(", ".join(str(p) for p in paths), "defined twice", rule=name))
    if problems:
        raise SloFileError(problems)
    return found


def _slo(file: str, number: int, document: Any) -> tuple[Slo | None, list[Problem]]:
    where = f"document {number + 1}"
    if not isinstance(document, Mapping):
        return None, [Problem(file, "an SLO document must be a mapping", rule=where)]
    name = _get(document, "metadata", "name")
    label = name if isinstance(name, str) and name else where
    problems: list[Problem] = []

    def problem(field: str, message: str) -> None:
        problems.append(Problem(file, message, rule=label, field=field))

    if document.get("apiVersion") != "openslo/v1":
        problem("apiVersion", "must be openslo/v1")
    if document.get("kind") != "SLO":
        problem("kind", "must be SLO (other OpenSLO kinds are not read)")
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS:
        problem("metadata.name", "must be lower-case letters, digits and dashes")
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        problem("spec", "is required")
        return None, problems
    service = spec.get("service")
    if not isinstance(service, str) or not service:
        problem("spec.service", "is required")
    if spec.get("budgetingMethod", "Occurrences") != "Occurrences":
        problem("spec.budgetingMethod", "only Occurrences is supported")
    target = _target(spec.get("objectives"), problem)
    window = _window(spec.get("timeWindow"), problem)
    queries = _ratio(spec.get("indicator"), problem)
    if problems or target is None or window is None or queries is None:
        return None, problems
    total, good, bad = queries
    description = spec.get("description") or ""
    return (
        Slo(str(name), str(service), str(description), target, window, total, good, bad),
        [],
    )


def _get(document: Mapping[str, Any], *keys: str) -> Any:
    value: Any = document
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _target(objectives: Any, problem: Any) -> float | None:
    if not isinstance(objectives, list) or len(objectives) != 1:
        problem("spec.objectives", "give exactly one objective with a target")
        return None
    target = objectives[0].get("target") if isinstance(objectives[0], Mapping) else None
    if not isinstance(target, int | float) or not 0 < target < 1:
        problem("spec.objectives.0.target", "must be a ratio between 0 and 1 (0.999)")
        return None
    return float(target)


def _window(windows: Any, problem: Any) -> timedelta | None:
    if not isinstance(windows, list) or len(windows) != 1 or not isinstance(windows[0], Mapping):
        problem("spec.timeWindow", "give exactly one rolling window, e.g. {duration: 30d}")
        return None
    if windows[0].get("isRolling", True) is not True:
        problem("spec.timeWindow.0.isRolling", "only rolling windows are supported")
        return None
    try:
        window = parse_duration(str(windows[0].get("duration")))
    except ValueError as exc:
        problem("spec.timeWindow.0.duration", str(exc))
        return None
    if window < timedelta(days=1):
        problem("spec.timeWindow.0.duration", "must be at least 1d (the alerts look at 3d)")
        return None
    return window


def _ratio(indicator: Any, problem: Any) -> tuple[str, str | None, str | None] | None:
    ratio = _get(indicator, "spec", "ratioMetric") if isinstance(indicator, Mapping) else None
    if not isinstance(ratio, Mapping):
        problem("spec.indicator.spec.ratioMetric", "an inline ratio indicator is required")
        return None
    if ratio.get("counter") is not True:
        problem("spec.indicator.spec.ratioMetric.counter", "must be true (rates of counters)")
    queries: dict[str, str | None] = {}
    for part in ("total", "good", "bad"):
        field = f"spec.indicator.spec.ratioMetric.{part}"
        source = _get(ratio, part, "metricSource")
        if ratio.get(part) is None:
            queries[part] = None
            continue
        if not isinstance(source, Mapping) or source.get("type") != "Prometheus":
            problem(f"{field}.metricSource.type", "must be Prometheus")
            continue
        query = _get(source, "spec", "query")
        if not isinstance(query, str) or WINDOW not in query:
            problem(f"{field}.metricSource.spec.query", f"a PromQL query using {WINDOW}")
            continue
        queries[part] = query.strip()
    if queries.get("total") is None:
        problem("spec.indicator.spec.ratioMetric.total", "is required")
    if (queries.get("good") is None) == (queries.get("bad") is None):
        problem("spec.indicator.spec.ratioMetric", "give exactly one of good and bad")
    total = queries.get("total")
    if total is None:
        return None
    return total, queries.get("good"), queries.get("bad")
