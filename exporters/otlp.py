"""Where sampled spans go: OTLP over HTTP/protobuf when an endpoint is set, else a local file."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from exporters.tracefile import TraceFileExporter

TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The traces URL for an ``OTEL_EXPORTER_OTLP_ENDPOINT`` base URL (spec: append the path).

    >>> traces_url("http://collector:4318/")
    'http://collector:4318/v1/traces'
    """
    return endpoint.rstrip("/") + TRACES_PATH


def redact(url: str) -> str:
    """``url`` fit for a log line: user info and query removed.

    >>> redact("https://user:secret@tempo:4318/v1/traces?token=x")
    'https://tempo:4318/v1/traces'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def otlp_exporter(endpoint: str, *, timeout_seconds: float = 10.0) -> SpanExporter:
    """An OTLP/HTTP protobuf exporter for the ``OTEL_EXPORTER_OTLP_ENDPOINT`` base URL."""
    return OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=timeout_seconds)


def span_processor(
    *,
    otlp_endpoint: str | None,
    traces_file: str,
    schedule_delay_millis: int = 1000,
) -> tuple[SpanProcessor, str]:
    """The batching processor for the configured destination, and a loggable description.

    Spans are batched on a background thread, off the request path; a full queue drops
    spans rather than blocking requests.
    """
    exporter: SpanExporter
    if otlp_endpoint:
        exporter = otlp_exporter(otlp_endpoint)
        where = f"OTLP {redact(traces_url(otlp_endpoint))}"
    else:
        exporter = TraceFileExporter(traces_file)
        # Each worker claims a file of its own (traces.jsonl, traces-1.jsonl, ...).
        where = f"file {traces_file} (or a numbered sibling per worker)"
    processor = BatchSpanProcessor(
        exporter, schedule_delay_millis=schedule_delay_millis, max_queue_size=8192
    )
    return processor, where
