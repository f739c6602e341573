"""The metric catalogue is a contract: names, types, labels and buckets, read back from scrapes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from alerts.metrics import EngineMetrics
from api.auth_metrics import AuthMetrics
from api.faults.metrics import FaultMetrics
from instrumentation.catalogue import (
    CACHE_BUCKETS,
    DB_BUCKETS,
    HTTP_BUCKETS,
    Catalogue,
    ProcessMetrics,
)
from instrumentation.process import configured_workers, usable_cores
from tests.instrumentation.support import parse_text
from tests.support.stack import running_app

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"


def _documented() -> list[tuple[str, str, set[str], tuple[float, ...] | None]]:
    """(family name as parsed, type, label names, buckets) from the tables in docs/metrics.md."""
    rows = []
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        name, kind, labels, buckets, _ = cells
        family = name.strip("`")
        if kind == "counter":
            family = family.removesuffix("_total")
        label_names = {label.strip(" `") for label in labels.split(",") if label.strip()}
        bounds = tuple(float(b) for b in buckets.split()) or None
        rows.append((family, kind, label_names, bounds))
    return rows


CONTRACT = _documented()


def _every_metric(registry: CollectorRegistry) -> Catalogue:
    """The app's catalogue, each of its metrics and of those the packages register beside it
    (the alert engine's, the fault injector's, the service's auth metric) touched once: the
    contract covers them all."""
    metrics = Catalogue(registry)
    groups = (metrics, EngineMetrics(metrics), FaultMetrics(registry), AuthMetrics(registry))
    for group in groups:
        for value in vars(group).values():
            _touch(value)
    return metrics


def _touch(metric: object) -> None:
    labelnames = getattr(metric, "_labelnames", None)
    if labelnames is None:
        return
    child = metric.labels(*["x"] * len(labelnames)) if labelnames else metric  # type: ignore[attr-defined]
    if hasattr(child, "observe"):
        child.observe(0.01)
    elif hasattr(child, "set"):
        child.set(1)
    else:
        child.inc()


def test_every_metric_of_the_catalogue_is_documented_and_back() -> None:
    metrics = _every_metric(CollectorRegistry())
    families = parse_text(generate_latest(metrics.registry).decode())
    # The text format shows each counter's and histogram's creation time as a family of its own.
    scraped = {name for name in families if not name.endswith("_created")}
    documented = {name for name, *_ in CONTRACT}
    assert scraped == documented
    buckets = {name: bounds for name, _, _, bounds in CONTRACT}
    assert buckets["http_server_request_duration_seconds"] == HTTP_BUCKETS
    assert buckets["db_client_operation_duration_seconds"] == DB_BUCKETS
    assert buckets["cache_operation_duration_seconds"] == CACHE_BUCKETS


@pytest.mark.parametrize(
    ("name", "kind", "labels", "buckets"), CONTRACT, ids=[c[0] for c in CONTRACT]
)
def test_catalogue_scrape_matches_the_contract(
    name: str, kind: str, labels: set[str], buckets: tuple[float, ...] | None
) -> None:
    metrics = _every_metric(CollectorRegistry())
    families = parse_text(generate_latest(metrics.registry).decode())
    family = families[name]
    assert family.type == kind
    sample_labels = {key for s in family.samples for key in s.labels if key != "le"}
    assert sample_labels == labels
    if buckets is not None:
        bounds = sorted(
            {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
        )
        assert bounds == [*buckets, float("inf")]


def test_multiprocess_process_metrics_keep_the_standard_names() -> None:
    registry = CollectorRegistry()
    ProcessMetrics(registry)
    families = parse_text(generate_latest(registry).decode())
    assert families["process_resident_memory_bytes"].type == "gauge"
    assert families["process_start_time_seconds"].type == "gauge"
    assert families["process_cpu_seconds"].type == "counter"


async def test_the_running_api_exposes_the_catalogue(metrics_only: dict[str, str]) -> None:
    async with running_app({**metrics_only, "INSTANCE_ID": "api-7"}) as api:
        assert (await api.client.get("/properties")).status_code == 200
        assert (await api.client.get("/properties")).status_code == 200
        response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = parse_text(response.text)
    service = [row for row in CONTRACT if not row[0].startswith("dynoscope_")]
    # Every documented metric of the service is declared from the start, labelled or not.
    assert {name: families[name].type for name, *_ in service if name in families} == {
        name: kind for name, kind, *_ in service
    }
    for name in ("http_server_request_duration_seconds", "db_client_errors", "cache_requests"):
        assert name in families, name
    http = families["http_server_request_duration_seconds"]
    routes = {s.labels["route"] for s in http.samples if s.name.endswith("_count")}
    assert routes == {"/properties"}  # the scrape itself is not counted
    db = families["db_client_operation_duration_seconds"]
    assert {"operation": "SELECT", "table": "properties"} in [
        {k: v for k, v in s.labels.items() if k != "le"} for s in db.samples
    ]
    cache = {
        s.labels["result"]: s.value
        for s in families["cache_requests"].samples
        if s.name == "cache_requests_total"
    }
    assert cache == {"miss": 1.0, "hit": 1.0}
    info = families["dynoscope_instance_info"].samples
    assert [(s.labels["instance_id"], s.value) for s in info] == [("api-7", 1.0)]
    assert info[0].labels["version"]
    cores = families["dynoscope_instance_cores"].samples
    assert [(s.labels["workers"], s.value) for s in cores] == [("1", 1.0)]
    for name in (
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_cpu_seconds",
    ):
        assert families[name].samples[0].value > 0, name
    used = {s.labels["state"]: s.value for s in families["db_client_connections"].samples}
    assert set(used) == {"used", "idle"}
    assert used["used"] == 0


def test_usable_cores_are_the_workers_capped_by_affinity_and_quota(tmp_path: Path) -> None:
    allowed = len(os.sched_getaffinity(0))
    unlimited = tmp_path / "cpu.max"
    unlimited.write_text("max 100000\n")
    assert usable_cores(1, cpu_max=unlimited) == 1.0
    assert usable_cores(64, cpu_max=unlimited) == float(allowed)
    half = tmp_path / "half.max"
    half.write_text("50000 100000\n")
    assert usable_cores(4, cpu_max=half) == 0.5
    assert usable_cores(2, cpu_max=tmp_path / "absent") == min(2.0, allowed)
    assert configured_workers({"WEB_CONCURRENCY": "3"}) == 3
    assert configured_workers({"WEB_CONCURRENCY": "lots"}) == configured_workers({}) == 1
