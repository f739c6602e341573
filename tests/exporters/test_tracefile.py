"""The local trace file: OTLP/JSON lines, bounded by rotation, read back tolerantly."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from exporters.tracefile import TraceFileExporter, read_spans


def _provider(path: Path, max_bytes: int = 1 << 20) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "api", "service.instance.id": "i-1"})
    )
    provider.add_span_processor(SimpleSpanProcessor(TraceFileExporter(path, max_bytes=max_bytes)))
    return provider


def test_lines_follow_the_otlp_json_mapping(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "traces.jsonl"
    tracer = _provider(path).get_tracer("test")
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER) as parent:
        parent.set_attributes({"n": 3, "ok": True, "ratio": 0.5, "tags": ["a", "b"], "s": 'q"uote'})
        child = tracer.start_span("SELECT homes", kind=SpanKind.CLIENT)
        child.add_event("retry", {"attempt": 2})
        child.set_status(Status(StatusCode.ERROR, "timeout"))
        child.end()
    first = json.loads(path.read_text().splitlines()[0])
    span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["name"] == "SELECT homes"
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    assert span["status"] == {"code": 2, "message": "timeout"}
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert span["events"][0]["attributes"] == [{"key": "attempt", "value": {"intValue": "2"}}]
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0

    spans = read_spans(path)
    server = next(s for s in spans if s.kind == 2)
    client = next(s for s in spans if s.kind == 3)
    assert client.parent_id == server.span_id and client.trace_id == server.trace_id
    assert server.attributes == {
        "n": 3,
        "ok": True,
        "ratio": 0.5,
        "tags": ["a", "b"],
        "s": 'q"uote',
    }
    assert server.service == "api@i-1"


def test_file_is_rotated_once_and_both_halves_are_read(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    tracer = _provider(path, max_bytes=2_000).get_tracer("test")
    for n in range(40):
        tracer.start_span(f"span-{n}").end()
    rotated = path.with_name("traces.jsonl.1")
    assert rotated.exists()
    assert path.stat().st_size < 2_000 + 1_000
    names = [s.name for s in read_spans(path)]
    assert names == sorted(names, key=lambda name: int(name.split("-")[1]))
    assert names[-1] == "span-39"


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    _provider(path).get_tracer("test").start_span("whole").end()
    with path.open("a") as handle:
        handle.write('{"resourceSpans":[{"resource"')
    assert [s.name for s in read_spans(path)] == ["whole"]


def test_booleans_and_numbers_keep_their_types() -> None:
    from exporters.tracefile import _scalar_pair

    encoded = [_scalar_pair("k", value) for value in (1, True, 1.0)]
    assert '"intValue"' in encoded[0]
    assert '"boolValue"' in encoded[1]
    assert '"doubleValue"' in encoded[2]
