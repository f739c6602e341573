"""Sampling first, trace context, log correlation."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from prometheus_client import CollectorRegistry

from instrumentation.catalogue import Catalogue
from instrumentation.correlation import TraceContextFormatter, install_log_correlation
from instrumentation.middleware import HttpMetrics, TelemetryMiddleware
from instrumentation.tracing import (
    SAMPLERS,
    Tracing,
    TracingError,
    build_sampler,
    current_ids,
    parse_traceparent,
    sampled_parent,
)

log = logging.getLogger("dynoscope.test")


def _traced_app(sampler: str, ratio: float) -> tuple[FastAPI, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(resource=Resource.create({}), sampler=build_sampler(sampler, ratio))
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.get("/work/{n}")
    async def work(n: int) -> dict[str, object]:
        log.warning("working on %d", n)
        parent = sampled_parent()
        ids = current_ids.get()
        return {"sampled": parent is not None, "trace_id": format(ids[0], "032x") if ids else ""}

    metrics = HttpMetrics(Catalogue(CollectorRegistry()))
    app.add_middleware(TelemetryMiddleware, metrics=metrics, tracing=tracing)
    return app, exporter


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", True),
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", True),
        (b"00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        (b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        (b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", False),
        (b"00-zzz7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        (b"garbage", False),
    ],
)
def test_traceparent_parsing(header: bytes, valid: bool) -> None:
    assert (parse_traceparent(header) is not None) is valid


def test_every_standard_sampler_name_is_accepted() -> None:
    for name in SAMPLERS:
        assert build_sampler(name.upper(), 0.5) is not None
    with pytest.raises(TracingError, match=r"OTEL_TRACES_SAMPLER.*'sometimes'"):
        build_sampler("sometimes", 0.5)


async def test_unsampled_requests_make_no_span_but_keep_ids_for_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_correlation()
    app, exporter = _traced_app("parentbased_traceidratio", 0.0)
    with caplog.at_level(logging.WARNING, logger="dynoscope.test"):
        async with _client(app) as client:
            body = (await client.get("/work/1")).json()
    assert exporter.get_finished_spans() == ()
    assert body["sampled"] is False
    assert len(body["trace_id"]) == 32
    record = next(r for r in caplog.records if r.getMessage() == "working on 1")
    assert record.trace_id == body["trace_id"]  # type: ignore[attr-defined]


async def test_sampled_request_is_one_server_span_named_by_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_correlation()
    app, exporter = _traced_app("always_on", 1.0)
    with caplog.at_level(logging.WARNING, logger="dynoscope.test"):
        async with _client(app) as client:
            body = (await client.get("/work/7")).json()
    (span,) = exporter.get_finished_spans()
    assert isinstance(span, ReadableSpan)
    assert span.name == "GET /work/{n}"
    assert span.parent is None
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/work/{n}"
    assert span.attributes["url.path"] == "/work/7"
    assert span.attributes["http.response.status_code"] == 200
    assert span.resource.attributes["telemetry.sdk.language"] == "python"
    assert body == {"sampled": True, "trace_id": format(span.context.trace_id, "032x")}
    record = next(r for r in caplog.records if r.getMessage() == "working on 7")
    assert record.span_id == format(span.context.span_id, "016x")  # type: ignore[attr-defined]
    line = TraceContextFormatter(logging.Formatter("%(message)s")).format(record)
    assert line == f"working on 7 trace_id={body['trace_id']} span_id={record.span_id}"  # type: ignore[attr-defined]


async def test_ratio_sampling_follows_the_trace_id() -> None:
    app, exporter = _traced_app("parentbased_traceidratio", 0.1)
    async with _client(app) as client:
        for n in range(1000):
            await client.get(f"/work/{n}")
    spans = exporter.get_finished_spans()
    assert 40 <= len(spans) <= 200  # 10 % of 1000, with a wide margin
    bound = TraceIdRatioBased(0.1).bound
    assert all(span.context.trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < bound for span in spans)


def test_logs_outside_requests_have_empty_ids(caplog: pytest.LogCaptureFixture) -> None:
    install_log_correlation()
    with caplog.at_level(logging.WARNING, logger="dynoscope.test"):
        log.warning("idle")
    record = caplog.records[-1]
    assert (record.trace_id, record.span_id) == ("", "")  # type: ignore[attr-defined]
    formatted = TraceContextFormatter(logging.Formatter("%(message)s")).format(record)
    assert formatted == "idle"
