"""Shared by the instrumentation and exporter tests: settings fixtures, scrape parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families


def parse_text(text: str) -> dict[str, Metric]:
    """A Prometheus text-format scrape, by family name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def parse_openmetrics(text: str) -> dict[str, Metric]:
    """An OpenMetrics scrape, by family name (the parser also validates the format)."""
    return {family.name: family for family in openmetrics_families(text)}


def sample_value(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The sum of the samples ``name{labels}``: 0 when the metric has no such sample yet.

    A metric the scrape does not declare at all is an error, so a renamed metric fails the
    test instead of reading as 0.
    """
    family_name = name
    for suffix in ("_bucket", "_count", "_sum", "_total"):
        family_name = family_name.removesuffix(suffix)
    family = families.get(family_name) or families.get(name)
    if family is None:
        raise AssertionError(f"the scrape has no metric {name!r}: {sorted(families)}")
    values = [
        sample.value
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return float(sum(values))


@pytest.fixture
def metrics_only(sqlite_environ: dict[str, str]) -> dict[str, str]:
    """The SQLite stack with metrics on and tracing off."""
    return {**sqlite_environ, "OTEL_SDK_DISABLED": "true"}


@pytest.fixture
def traced(sqlite_environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The SQLite stack with metrics on and every request traced to a file in ``tmp_path``."""
    return {
        **sqlite_environ,
        "OTEL_TRACES_SAMPLER": "always_on",
        "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
    }
