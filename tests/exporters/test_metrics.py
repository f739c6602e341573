"""``/metrics``: formats, exemplars, token, gzip, a port of its own."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from exporters.tracefile import read_spans
from tests.instrumentation.support import parse_openmetrics, parse_text
from tests.support.stack import free_port, running_app

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


async def test_openmetrics_scrape_carries_trace_exemplars(traced: dict[str, str]) -> None:
    async with running_app(traced) as api:
        for _ in range(3):
            assert (await api.client.get("/properties")).status_code == 200
        response = await api.client.get("/metrics", headers={"Accept": OPENMETRICS})
        plain = await api.client.get("/metrics")
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    families = parse_openmetrics(response.text)
    buckets = [
        s
        for s in families["http_server_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["route"] == "/properties"
    ]
    exemplars = {s.exemplar.labels["trace_id"] for s in buckets if s.exemplar is not None}
    assert exemplars
    sampled = {span.trace_id for span in read_spans(Path(traced["DYNOSCOPE_TRACES_FILE"]))}
    assert exemplars <= sampled
    # The classic text format has no exemplars and must still parse.
    assert "# {" not in plain.text
    assert "http_server_request_duration_seconds" in parse_text(plain.text)


async def test_no_exemplars_for_unsampled_requests(sqlite_environ: dict[str, str]) -> None:
    environ = {**sqlite_environ, "OTEL_TRACES_SAMPLER": "always_off"}
    async with running_app(environ) as api:
        await api.client.get("/properties")
        response = await api.client.get("/metrics", headers={"Accept": OPENMETRICS})
    samples = parse_openmetrics(response.text)["http_server_request_duration_seconds"].samples
    assert samples
    assert all(s.exemplar is None for s in samples)


async def test_bearer_token_guards_the_scrape(metrics_only: dict[str, str]) -> None:
    async with running_app({**metrics_only, "METRICS_TOKEN": "s3cret-token"}) as api:
        missing = await api.client.get("/metrics")
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await api.client.get(
            "/metrics", headers={"Authorization": "Bearer s3cret-token", "Accept-Encoding": "gzip"}
        )
    assert missing.status_code == 401
    assert missing.json() == {"error": "unauthorized", "detail": "metrics: bearer token required"}
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert "s3cret" not in missing.text + wrong.text
    assert right.status_code == 200
    assert right.headers["content-encoding"] == "gzip"  # httpx decoded it for us
    assert "dynoscope_instance_info" in right.text


def test_gzip_only_when_asked() -> None:
    from prometheus_client import CollectorRegistry, Counter

    from exporters.metrics import render

    registry = CollectorRegistry()
    Counter("things", "Things.", registry=registry).inc()
    plain = render(registry, accept=None, accept_encoding=None)
    packed = render(registry, accept=None, accept_encoding="gzip, deflate")
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(packed.body) == plain.body


async def test_separate_port_serves_metrics_off_the_public_listener(
    metrics_only: dict[str, str],
) -> None:
    port = free_port()
    environ = {**metrics_only, "METRICS_PORT": str(port), "METRICS_TOKEN": "tok"}
    async with running_app(environ) as api:
        await api.client.get("/healthz")
        assert (await api.client.get("/metrics")).status_code == 404
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
            denied = await scraper.get("/metrics")
            scraped = await scraper.get(
                "/metrics", headers={"Authorization": "Bearer tok", "Accept": OPENMETRICS}
            )
    assert denied.status_code == 401
    assert scraped.status_code == 200
    families = parse_openmetrics(scraped.text)
    counts = [
        s
        for s in families["http_server_request_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert [(s.labels["route"], s.value) for s in counts] == [("/healthz", 1.0)]
    async with httpx.AsyncClient() as late:
        with pytest.raises(httpx.ConnectError):
            await late.get(f"http://127.0.0.1:{port}/metrics", timeout=1)  # closed with the app
