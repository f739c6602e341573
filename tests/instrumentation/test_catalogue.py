"""The metric catalogue is a contract: names, types, labels and buckets, read back from scrapes."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from instrumentation.catalogue import (
    CACHE_BUCKETS,
    DB_BUCKETS,
    HTTP_BUCKETS,
    Catalogue,
    ProcessMetrics,
)
from tests.instrumentation.support import parse_text
from tests.support.stack import running_app

# (family name as parsed, type, label names, buckets) straight from DESIGN.md.
CONTRACT = [
    (
        "http_server_request_duration_seconds",
        "histogram",
        {"method", "route", "status_code"},
        HTTP_BUCKETS,
    ),
    ("http_server_active_requests", "gauge", {"method", "route"}, None),
    ("http_server_rejected_requests", "counter", {"reason"}, None),
    ("db_client_operation_duration_seconds", "histogram", {"operation", "table"}, DB_BUCKETS),
    ("db_client_slow_queries", "counter", {"operation", "table"}, None),
    ("db_client_connections", "gauge", {"state"}, None),
    ("cache_requests", "counter", {"cache", "result"}, None),
    ("cache_operation_duration_seconds", "histogram", {"cache", "operation"}, CACHE_BUCKETS),
    ("dynoscope_instance_info", "gauge", {"instance_id", "version"}, None),
    ("dynoscope_rule_evaluations", "counter", {"rule"}, None),
    ("dynoscope_rule_evaluation_failures", "counter", {"rule"}, None),
    ("dynoscope_rule_evaluation_duration_seconds", "histogram", {"group"}, None),
    ("dynoscope_alerts", "gauge", {"alertname", "state"}, None),
    ("dynoscope_notifications", "counter", {"receiver", "outcome"}, None),
    ("dynoscope_scheduler_leader", "gauge", set(), None),
]
DESIGN_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10)
DESIGN_DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _touch_every_metric(metrics: Catalogue) -> None:
    """One sample per labelled metric, so label names show in the scrape."""
    for name in vars(metrics):
        metric = getattr(metrics, name)
        labelnames = getattr(metric, "_labelnames", None)
        if labelnames is None:
            continue
        child = metric.labels(*["x"] * len(labelnames)) if labelnames else metric
        if hasattr(child, "observe"):
            child.observe(0.01)
        elif hasattr(child, "set"):
            child.set(1)
        else:
            child.inc()


def test_bucket_constants_match_the_design() -> None:
    assert HTTP_BUCKETS == DESIGN_HTTP_BUCKETS
    assert DB_BUCKETS == DESIGN_DB_BUCKETS


@pytest.mark.parametrize(
    ("name", "kind", "labels", "buckets"), CONTRACT, ids=[c[0] for c in CONTRACT]
)
def test_catalogue_scrape_matches_the_contract(
    name: str, kind: str, labels: set[str], buckets: tuple[float, ...] | None
) -> None:
    metrics = Catalogue(CollectorRegistry())
    _touch_every_metric(metrics)
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
    for name, kind, labels, _ in CONTRACT[:8]:
        assert families[name].type == kind, name
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
    for name in (
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_cpu_seconds",
    ):
        assert families[name].samples[0].value > 0, name
    used = {s.labels["state"]: s.value for s in families["db_client_connections"].samples}
    assert set(used) == {"used", "idle"}
    assert used["used"] == 0
