"""OTLP/HTTP export, received by a local receiver and decoded with the OTLP protobufs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import text

from exporters.otlp import redact
from tests.support.stack import running_app


class Receiver:
    """A minimal OTLP/HTTP traces endpoint on a loopback port."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every received span with its resource attributes."""
        found = []
        for _, _, body in self.requests:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def _attributes(span: Span) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind) if kind else None
    return values


def _add_probe(app: FastAPI) -> None:
    @app.get("/probe/{n}")
    async def probe(n: int) -> dict[str, int]:
        async with app.state.services.engine.connect() as connection:
            value = (await connection.execute(text("SELECT :n + 1"), {"n": n})).scalar_one()
        return {"value": int(value)}


async def test_spans_reach_an_otlp_receiver_with_sql_under_the_request(
    sqlite_environ: dict[str, str], receiver: Receiver
) -> None:
    environ = {
        **sqlite_environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_SERVICE_NAME": "listing-api",
        "INSTANCE_ID": "api-3",
    }
    async with running_app(environ) as api:
        _add_probe(api.app)
        response = await api.client.get("/probe/41")
        assert response.json() == {"value": 42}
    # Shutting the app down flushed the batch.
    assert receiver.requests
    path, content_type, _ = receiver.requests[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    spans = receiver.spans()
    resource, server = next((r, s) for r, s in spans if s.kind == Span.SPAN_KIND_SERVER)
    assert resource["service.name"] == "listing-api"
    assert resource["service.instance.id"] == "api-3"
    assert server.name == "GET /probe/{n}"
    assert _attributes(server)["http.route"] == "/probe/{n}"
    assert _attributes(server)["http.response.status_code"] == 200
    sql = [s for _, s in spans if s.kind == Span.SPAN_KIND_CLIENT and s.trace_id == server.trace_id]
    assert sql, "the SQL statement has a span in the request's trace"
    assert all(s.parent_span_id == server.span_id for s in sql)
    statement = _attributes(sql[0])
    assert statement["db.system.name"] == "sqlite"
    assert statement["db.operation.name"] == "SELECT"
    assert "41" not in statement["db.query.text"]  # parameters never leave the process


async def test_incoming_traceparent_is_continued(
    sqlite_environ: dict[str, str], receiver: Receiver
) -> None:
    environ = {
        **sqlite_environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER_ARG": "0",  # parent-based: the caller's decision wins
    }
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with running_app(environ) as api:
        await api.client.get("/healthz", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        await api.client.get("/healthz", headers={"traceparent": f"00-{'a' * 32}-{parent_id}-00"})
        await api.client.get("/healthz")
    spans = [span for _, span in receiver.spans()]
    assert len(spans) == 1
    assert spans[0].trace_id.hex() == trace_id
    assert spans[0].parent_span_id.hex() == parent_id


async def test_nothing_is_exported_when_nothing_is_sampled(
    sqlite_environ: dict[str, str], receiver: Receiver
) -> None:
    environ = {
        **sqlite_environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    }
    async with running_app(environ) as api:
        _add_probe(api.app)
        for n in range(20):
            await api.client.get(f"/probe/{n}")
    assert receiver.spans() == []


def test_endpoint_credentials_are_redacted_for_logs() -> None:
    assert redact("https://user:pw@collector:4318/v1/traces?key=abc") == (
        "https://collector:4318/v1/traces"
    )
